"""Classes at run time: the bundle's text side equals the training-side text path, add_classes scores new
classes as PyTorch would, without importing torch; refusals say what, why and how to fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.bundle_stage import seal_manifest
from tdsm_edge.errors import BundleError, ConfigError, InputError, MissingDependencyError
from tdsm_edge.runtime import ZeroShotRecognizer
from tdsm_edge.runtime.manifest import load_manifest
from tdsm_edge.runtime.text_encoder import OrtTextEncoder

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-4
NEW = ["wave twice", "sit down on a chair", "Café-style clapping, très vite!"]
NEW_DESC = [
    "A person raises the right hand and waves it twice.",
    "A person bends both knees and lowers the body until seated, keeping the back straight.",
    "Someone claps both hands quickly in front of the chest",
]


def rel(got: np.ndarray, ref: np.ndarray) -> float:
    """max |a − b| / max |b| (text features and tables cross zero)."""
    return float(np.abs(np.asarray(got, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


@pytest.fixture(scope="module")
def text_side(text_bundle) -> OrtTextEncoder:
    return OrtTextEncoder(load_manifest(text_bundle.dir), threads=1)


def test_text_features_equal_the_minilm_encoder(text_side, text_bundle):
    L = text_bundle.num_tokens
    prompts = [
        "wave",
        NEW_DESC[1],
        "a person lifts the right knee, then kicks forward with the right leg while balancing on the left leg",
        "Ünïcödé façade — (twice)!",
    ]
    ref = text_bundle.encoder.encode(prompts, L)
    assert ref.mask[2].all() and not ref.mask[0].all()  # one prompt longer than L, one padded
    g, loc, mask = text_side.features(prompts)
    assert (g.dtype, loc.dtype, mask.dtype) == (np.float32, np.float32, bool)
    assert g.shape == ref.global_.shape and loc.shape == ref.local.shape == (4, L, 384)
    assert rel(g, ref.global_) <= RTOL and rel(loc, ref.local) <= RTOL
    np.testing.assert_array_equal(mask, ref.mask)


def test_class_tables_equal_the_training_side(text_side, text_bundle):
    ref_text = text_bundle.class_text(NEW, NEW_DESC)  # encode_classes: both prompt sets, channels concatenated
    fc, fl, mask = text_side.class_text(NEW, NEW_DESC)
    assert rel(fc, ref_text.global_) <= RTOL and rel(fl, ref_text.local) <= RTOL
    np.testing.assert_array_equal(mask, ref_text.mask)
    want = text_bundle.tables(ref_text)  # class_tables(fp32)
    got = text_side.class_tables(NEW, NEW_DESC)
    assert list(got) == list(want)
    for n in want:
        assert got[n].dtype == np.float32 and got[n].shape == want[n].shape, n
        assert rel(got[n], want[n]) <= RTOL, (n, rel(got[n], want[n]))
    np.testing.assert_array_equal(got["key_bias"], want["key_bias"])  # the OR-ed mask, exactly


def test_add_classes_scores_old_classes_as_before_and_new_ones_as_pytorch(text_bundle, runtime_bundle):
    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    raw = runtime_bundle.windows(per_class=1, seed=11)  # (5, 2, T, V, 3)
    z = runtime_bundle.features(raw)  # torch encoder features (5, Dz)
    old = list(rec.classes)
    before = rec.score_features(z)  # (5, K0)
    assert rec.add_classes(NEW, NEW_DESC) == old + NEW
    assert rec.classes == rec.all_classes == old + NEW
    after = rec.score_features(z)  # (5, K0 + 3)
    np.testing.assert_allclose(after[:, : len(old)], before, rtol=1e-6, atol=0)
    ref_new = text_bundle.errors(z, text_bundle.class_text(NEW, NEW_DESC))  # the torch reference, new classes
    np.testing.assert_allclose(after[:, len(old) :], ref_new, rtol=RTOL, atol=0)
    preds = rec.predict_batch(raw)
    assert all(p.errors.shape == (len(old) + 3,) and p.label in rec.classes for p in preds)
    assert rec.set_active_classes([NEW[1], old[0]]) == [NEW[1], old[0]]
    np.testing.assert_allclose(rec.score_features(z), after[:, [len(old) + 1, 0]], rtol=1e-6, atol=0)
    rec.set_active_classes(None)
    assert rec.add_classes(["nod"], ["A person nods the head up and down."])[-1] == "nod"  # twice is fine


def test_add_classes_on_the_torch_backend(text_bundle, runtime_bundle):
    pytest.importorskip("torch")
    ort_rec = ZeroShotRecognizer.load(text_bundle.dir, backend="onnxruntime", threads=1)
    torch_rec = ZeroShotRecognizer.load(text_bundle.dir, backend="torch", threads=1)
    z = runtime_bundle.features(runtime_bundle.windows(per_class=1, seed=13))
    for rec in (ort_rec, torch_rec):
        rec.add_classes(NEW[:2], NEW_DESC[:2])
    np.testing.assert_allclose(torch_rec.score_features(z), ort_rec.score_features(z), rtol=RTOL, atol=0)


def test_add_classes_never_imports_torch(text_bundle, runtime_bundle, tmp_path):
    np.save(tmp_path / "window.npy", runtime_bundle.windows(per_class=1, seed=3)[0])
    code = (
        "import sys, json, numpy as np\n"
        "from tdsm_edge import ZeroShotRecognizer\n"
        "rec = ZeroShotRecognizer.load(sys.argv[1], threads=1)\n"
        "names = rec.add_classes(json.loads(sys.argv[3]), json.loads(sys.argv[4]))\n"
        "pred = rec.predict(np.load(sys.argv[2]))\n"
        "assert pred.errors.shape == (len(names),), pred\n"
        "heavy = {'torch', 'tokenizers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(len(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(text_bundle.dir),
            str(tmp_path / "window.npy"),
            json.dumps(NEW),
            json.dumps(NEW_DESC),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "8"


def test_bad_calls_raise_errors_that_say_what_and_how(text_bundle, runtime_bundle, monkeypatch):
    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    first = rec.classes[0]
    cases = [
        (("wave", ["x"]), "wrap a single one in a list"),
        (([], []), "at least one class name"),
        ((["a", "a"], ["x", "y"]), r"more than once"),
        (([first], ["x"]), "already exist"),
        ((["a", 3], ["x", "y"]), "non-empty string"),
        ((["a", "  "], ["x", "y"]), "non-empty string"),
        ((["a", "b"], ["x"]), "2 names but 1 descriptions"),
        ((["a"], None), "needs a description"),
        ((["a"], "one sentence"), "wrap a single one in a list"),
    ]
    for args, match in cases:
        with pytest.raises(InputError, match=match):
            rec.add_classes(*args)
    assert rec.all_classes == runtime_bundle.names  # nothing was added by a refused call
    plain = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)  # built with --no-text-encoder
    with pytest.raises(ConfigError, match="no text encoder graph.*: python -m export.build_engine .*--text-encoder"):
        plain.add_classes(["a"], ["x"])
    fresh = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if onnxruntime were not installed
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        fresh.add_classes(["a"], ["x"])


def test_manifest_records_the_text_side(text_bundle, tmp_path):
    m = load_manifest(text_bundle.dir)
    t = m.data["text"]
    assert t["encoder_id"] == "minilm:all-MiniLM-L6-v2/global-mean" and t["prompt_sets"] == list(
        text_bundle.prompt_sets
    )
    r = t["runtime"]
    assert (r["text_graph"], r["tables_graph"], r["tables_precision"]) == ("text_encoder", "tables", "fp32")
    assert (r["encoder_dim"], r["max_length"], r["vocab"]) == (384, 256, "vocab.txt")
    tok = r["tokenizer"]
    assert tok["lowercase"] and tok["strip_accents"] and "[MASK]" in tok["special_tokens"]
    assert m.graphs["tables"]["file"] == "tables_fp32.onnx" and m.graphs["text_encoder"]["file"] == "text_encoder.onnx"
    assert {"tables_fp32.onnx", "text_encoder.onnx", "vocab.txt"} <= set(m.data["files"])  # hashed like every file
    scorer_tables = [(x.name, x.dims) for x in m.io.graphs["scorer"].inputs[1:]]
    assert [(x.name, x.dims) for x in m.io.graphs["tables"].outputs] == scorer_tables
    assert [x.name for x in m.io.graphs["tables"].inputs] == ["fc", "fl", "mask"]
    assert m.io.axes["tokens"].min == text_bundle.num_tokens and m.io.axes["tokens"].max == 256
    assert len(m.data["classes"]["descriptions"]) == len(m.class_names)
    assert "--text-encoder" in m.rebuild_command
    copy = tmp_path / "copy"
    shutil.copytree(text_bundle.dir, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["io"]["graphs"]["tables"]["outputs"][-1]["dims"][-1] += 1
    seal_manifest(copy, data)  # consistent on its digest, inconsistent in content
    with pytest.raises(BundleError, match="the tables graph: it writes"):
        load_manifest(copy)


def test_added_class_benchmark_counts_every_sample(text_bundle, capsys):
    """benchmarks.added_class: the class examples/robot.py adds, scored among the bundle's classes plus itself;
    every sample is either right or counted under what it was mistaken for."""
    from benchmarks import added_class

    robot = (Path(__file__).resolve().parents[2] / "examples" / "robot.py").read_text()
    assert f'add_classes(["{added_class.NAME}"], ["{added_class.DESCRIPTION}"])' in robot  # the same class
    r = added_class.measure(str(text_bundle.dir), samples=6)
    assert r["classes"][-1] == added_class.NAME and len(r["classes"]) == 6
    assert round(r["top1"] * 6) + sum(r["mistaken_for"].values()) == 6
    assert set(r["mistaken_for"]) <= set(r["classes"][:-1])
    assert added_class.main([str(text_bundle.dir), "--samples", "2"]) == 0
    assert "'wave right hand' added from text, top-1" in capsys.readouterr().out
    assert added_class.main([str(text_bundle.dir / "missing")]) != 0  # one-line error, no traceback
    for bad in (["--samples", "0"], ["--samples", "100000001"], ["--seed", "-1"]):
        with pytest.raises(SystemExit) as e:  # argparse: one usage line, exit 2
            added_class.main([str(text_bundle.dir), *bad])
        assert e.value.code == 2
