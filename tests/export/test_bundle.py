"""Engine bundles: write → load → score on ONNX Runtime, against the torch reference; refusals on load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.bundle import BundleRequest, write_bundle  # noqa: E402
from export.bundle_stage import (
    BundleStage,  # noqa: E402
    seal_manifest,
)
from export.verify import verify_bundle  # noqa: E402
from tdsm_edge.config import RunConfig, ScheduleConfig  # noqa: E402
from tdsm_edge.errors import BundleError, ConfigError, EngineIncompatibleError, ExportError, InputError  # noqa: E402
from tdsm_edge.models.class_tables import class_tables  # noqa: E402
from tdsm_edge.models.schedule import DDPMSchedule  # noqa: E402
from tdsm_edge.runtime.integrity import manifest_digest
from tdsm_edge.runtime.iospec import AxisRange, GraphIO, IOSpec, TensorIO, scorer_io, tables_io, text_io  # noqa: E402
from tdsm_edge.runtime.manifest import load_manifest, load_tables  # noqa: E402
from tdsm_edge.runtime.ort_backend import OrtBackend, resolve_providers  # noqa: E402
from tdsm_edge.runtime.table_schema import table_names  # noqa: E402
from tdsm_edge.text.prompts import ClassText  # noqa: E402
from tdsm_edge.training.evaluation import tdsm_errors  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
K, J, NOISE_SEED = 6, 3, 4
COMMAND = "python -m export.build_engine --run runs/x/ru5/seed1 --out {out} --precision {p}"


def make_text(tiny) -> ClassText:
    fc, fl, mask = tiny.text(K, seed=5)
    return ClassText(
        fc.numpy(),
        fl.numpy(),
        mask.numpy(),
        tuple(f"class {i}" for i in range(K)),
        "test:random",
        ("label", "description"),
    )


@pytest.fixture(scope="module")
def built(tiny, stats, tmp_path_factory):
    """fp32 (dynamic batch 1..4) and fp16 (fixed batch 4) bundles of one tiny model: two exports, ~20 s."""
    root = tmp_path_factory.mktemp("bundles")
    model, schedule, text = tiny.model(), DDPMSchedule(ScheduleConfig()), make_text(tiny)
    out = {}
    for p, batch in (("fp32", AxisRange(1, 2, 4)), ("fp16", AxisRange(4, 4, 4))):
        out[p] = write_bundle(
            BundleRequest(
                root / p,
                model,
                schedule,
                stats,
                text,
                timestep=tiny.t,
                num_noises=J,
                noise_seed=NOISE_SEED,
                precision=p,
                batch=batch,
                run_config=RunConfig(),
                class_indices=list(range(10, 10 + K)),
                build_command=COMMAND.format(out=root / p, p=p),
            )
        )
    return model, schedule, text, out


def reference(built, stats, z: np.ndarray) -> np.ndarray:
    model, schedule, text, _ = built
    return tdsm_errors(model, schedule, stats, z, text, J, 25, NOISE_SEED)  # (N, K)


def copy_bundle(built, tmp_path, p="fp32") -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built[3][p].root, dst)
    return dst


def edit_manifest(path: Path, fn) -> None:
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    seal_manifest(path, m)  # re-sealed: these tests check the content checks behind the digest


def test_manifest_round_trips(built, tiny):
    model, _, text, out = built
    m = load_manifest(out["fp32"].root)
    assert sorted(p.name for p in m.root.iterdir()) == ["manifest.json", "reference", "scorer_fp32.onnx", "tables.npz"]
    assert m.data["schema_version"] == 2 and m.precision == "fp32" and m.class_names == list(text.names)
    assert m.digest == m.data["digest"] == manifest_digest(m.data)  # the bundle digest seals the manifest
    assert m.data["classes"]["indices"] == list(range(10, 16))
    assert m.data["text"] == {
        "encoder_id": "test:random",
        "prompt_sets": ["label", "description"],
        "num_tokens": tiny.cfg.num_tokens,
        "dim": tiny.cfg.cond_dim,
    }
    s = m.data["scoring"]
    assert (s["timestep"], s["num_noises"], s["noise_seed"]) == (tiny.t, J, NOISE_SEED)
    assert s["feature_standardization"]["folded_into"] == "scorer"
    assert m.data["model"]["denoiser"]["hidden_size"] == tiny.cfg.hidden_size
    assert m.data["skeleton"]["layout"]["name"] == "ntu25" and m.data["skeleton"]["preprocess"]["frames"] == 64
    assert m.rebuild_command.startswith("python -m export.build_engine") and m.data["plans"] == []
    ref = {
        "reference/denoiser/model.safetensors",
        "reference/denoiser/config.json",
        "reference/feature_mean.npy",
        "reference/feature_std.npy",
        "reference/noise_bank.npy",
    }  # the torch backend's weights, hashed too
    assert set(m.data["files"]) == {"scorer_fp32.onnx", "tables.npz"} | ref
    assert m.data["reference"]["encoder"] is None and m.data["reference"]["noise_bank"] == "reference/noise_bank.npy"
    assert m.io == IOSpec.from_dict(json.loads(json.dumps(m.io.to_dict())))  # json round trip of the spec
    assert m.io.graphs["scorer"] == scorer_io(tiny.cfg, "fp32")
    assert (m.io.axes["batch"], m.io.axes["classes"]) == (AxisRange(1, 2, 4), AxisRange(1, K, K))
    fc, fl, mask = (torch.from_numpy(a) for a in (text.global_, text.local, text.mask))
    want = class_tables(model, fc, fl, mask, tiny.t)
    got = load_tables(m)
    assert list(got) == list(want)
    for n in want:
        np.testing.assert_array_equal(got[n], want[n].numpy(), err_msg=n)
    assert load_manifest(out["fp16"].root).io.graphs["scorer"].tensor("ada_x").dtype == "float16"


def test_fp32_scores_equal_torch_for_any_batch_and_a_class_subset(built, stats, tiny):
    scorer = OrtBackend(built[3]["fp32"].root, threads=1)
    assert scorer.providers[0] == "CPUExecutionProvider" and scorer.classes == list(built[2].names)
    for B in (1, 7):  # 7 > the batch max 4: run in chunks
        z = tiny.features(B, seed=B).numpy()
        got, ref = scorer.errors(z), reference(built, stats, z)
        assert got.shape == (B, K) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=0)
    z = tiny.features(5, seed=9).numpy()
    ref = reference(built, stats, z)
    assert scorer.select(["class 3", "class 0", 5]) == ["class 3", "class 0", "class 5"]
    np.testing.assert_allclose(scorer.errors(z), ref[:, [3, 0, 5]], rtol=1e-4, atol=0)
    with pytest.raises(InputError, match="unknown classes"):
        scorer.select(["class 3", "kick"])
    with pytest.raises(InputError, match="z must be"):
        scorer.errors(np.zeros((2, tiny.cfg.z_dim + 1), np.float32))
    scorer.select(None)
    assert scorer.errors(z).shape == (5, K)


def test_fp16_bundle_agrees_on_top1_with_a_fixed_batch(built, stats, tiny):
    scorer = OrtBackend(built[3]["fp16"].root, threads=1)
    assert scorer.batch.fixed and scorer.batch.max == 4
    z = tiny.features(203, seed=11).numpy()  # 50 full batches + 3 samples padded to the fixed batch
    got, ref = scorer.errors(z), reference(built, stats, z)
    assert got.shape == (203, K) and got.dtype == np.float32
    assert (got.argmin(1) == ref.argmin(1)).mean() >= 0.99
    assert not np.array_equal(got, ref)  # really ran in fp16
    np.testing.assert_allclose(scorer.errors(z[:3]), got[:3], rtol=0, atol=0)  # padding does not leak


def test_verify_reports_and_fails_when_the_bundle_is_off(built, stats, tiny):
    model, schedule, text, out = built
    z = tiny.features(203, seed=11).numpy()  # the samples of the fp16 test above
    labels = np.full(203, 12)
    report = verify_bundle(out["fp16"].root, model, schedule, stats, text, z, labels, threads=1)
    assert report["passed"] and report["precision"] == "fp16" and report["scorer"]["top1_agreement"] >= 0.99
    assert report["scorer"]["labelled"] == 203 and 0 <= report["scorer"]["top1_bundle"] <= 1
    other = tiny.model()
    with torch.no_grad():
        other.blocks[0].mlp.fc1.weight.mul_(1.01)  # a reference 1% off in one layer
    with pytest.raises(ExportError, match="fp32 max relative error"):
        verify_bundle(out["fp32"].root, other, schedule, stats, text, z, threads=1)


def test_tampered_file_is_refused_with_the_rebuild_command(built, tmp_path):
    path = copy_bundle(built, tmp_path)
    tables = dict(np.load(path / "tables.npz"))
    tables["ada_x"][0, 0, 0, 0] += 1e-3
    np.savez(path / "tables.npz", **tables)
    for load in (load_manifest, OrtBackend):
        with pytest.raises(BundleError, match=r"tables.npz has sha256 .* the manifest records") as e:
            load(path)
        assert "Rebuild the bundle with: python -m export.build_engine --run runs/x/ru5/seed1" in str(e.value)
    (path / "tables.npz").unlink()
    with pytest.raises(BundleError, match="tables.npz is missing"):
        load_manifest(path)
    assert load_manifest(path, check_files=False).class_names  # the manifest itself is fine


def test_mismatched_manifest_is_refused(built, tmp_path):
    path = copy_bundle(built, tmp_path)
    original = (path / "manifest.json").read_text()
    edit_manifest(path, lambda m: m.update(schema_version=1))
    with pytest.raises(
        BundleError, match="schema version 1.*reads schema version 2 only \\(an older.*\\. Rebuild the bundle with: py"
    ):
        load_manifest(path)
    (path / "manifest.json").write_text(original)
    edit_manifest(path, lambda m: m["classes"]["names"].append("extra"))
    with pytest.raises(BundleError, match="its opt/max are 6/6 but the bundle lists 7 classes"):
        load_manifest(path)
    (path / "manifest.json").write_text(original)
    edit_manifest(path, lambda m: m["io"]["graphs"]["scorer"]["inputs"][0].update(dims=["batch", 99]))
    load_manifest(path)  # consistent on its own …
    with pytest.raises(BundleError, match=r"does not match the manifest's IO spec: input 'z' has dims \['batch', 16\]"):
        OrtBackend(path, threads=1)  # … but not with the graph
    (path / "manifest.json").write_text(original)
    edit_manifest(path, lambda m: m["io"]["graphs"]["scorer"]["inputs"][4]["dims"].__setitem__(1, 3))
    with pytest.raises(BundleError, match="class table 'ada_x'"):
        load_tables(load_manifest(path))
    with pytest.raises(BundleError, match="not an engine bundle"):
        load_manifest(tmp_path / "nowhere")


def test_plan_compatibility_names_the_rebuild_command(built):
    m = built[3]["fp16"]
    plan = {
        "file": "scorer_fp16.trt10.3.0.plan",
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
    }
    m.check_plan(plan, "10.3.0", "Orin", (8, 7))  # the machine that built it
    for machine, what in (
        (("10.7.0", "Orin", "8.7"), "TensorRT version"),
        (("10.3.0", "NVIDIA H100 80GB HBM3", "9.0"), "compute capability"),
    ):
        with pytest.raises(EngineIncompatibleError, match=what) as e:
            m.check_plan(plan, *machine)
        assert m.rebuild_command in str(e.value)


def test_loading_never_imports_torch(built):
    code = (
        "import sys, numpy as np\n"
        "from tdsm_edge.runtime.ort_backend import OrtBackend\nfrom tdsm_edge.runtime.manifest import load_manifest\n"
        f"m = load_manifest({str(built[3]['fp32'].root)!r})\n"
        f"s = OrtBackend({str(built[3]['fp32'].root)!r}, threads=1)\n"
        "assert s.errors(np.ones((3, s.z_dim), np.float32)).shape == (3, len(m.class_names))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_staging_is_atomic(tmp_path):
    out = tmp_path / "engines" / "b"
    with pytest.raises(RuntimeError):
        with BundleStage(out) as st:
            st.path("scorer_fp32.onnx").write_bytes(b"x")
            raise RuntimeError("build failed")
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing half-written, no staging left
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an engine bundle"):
        with BundleStage(out):
            pass
    assert (out / "notes.txt").read_text() == "mine"


def test_io_spec(tiny):
    for depth in (1, 2):
        io = scorer_io(tiny.model(depth=depth).cfg, "fp16")
        assert io.input_names[1:] == list(table_names(depth))  # iospec and tables.py name the same tables
        assert io.tensor("key_bias").dtype == "float32" and io.tensor("ada_c").dtype == "float16"
    spec = IOSpec(
        {"scorer": scorer_io(tiny.cfg, "fp32")}, {"batch": AxisRange.for_batch(8, True), "classes": AxisRange(1, 5, 5)}
    )
    assert spec.axes["batch"] == AxisRange(1, 4, 8) and AxisRange.for_batch(8, False) == AxisRange(8, 8, 8)
    prof = spec.profile("scorer")
    assert prof["z"] == ((1, 16), (4, 16), (8, 16))
    assert prof["ada_x"] == ((1, 2, 6, 32), (5, 2, 6, 32), (5, 2, 6, 32))
    assert spec.shape("scorer", "errors", batch=3, classes=2) == (3, 2)
    assert spec.graphs["scorer"].dynamic_axes()["errors"] == {0: "batch", 1: "classes"}
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        AxisRange(4, 2, 8)
    with pytest.raises(ConfigError, match="gives no min/opt/max"):
        IOSpec({"g": GraphIO((TensorIO("x", "float32", ("batch", 3)),), ())})
    with pytest.raises(ConfigError):
        resolve_providers("cuda", available=["CPUExecutionProvider"])
    assert resolve_providers("auto", available=["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_text_side_io_spec_matches_the_scorer_tables(tiny):
    for depth, masked in ((1, False), (2, True)):
        cfg = tiny.model(depth=depth, mask_text_padding=masked).cfg
        io = tables_io(cfg)
        assert [t.name for t in io.inputs] == ["fc", "fl"] + (["mask"] if masked else [])
        assert io.tensor("fl").dims == ("classes", cfg.num_tokens, cfg.cond_dim)
        assert [(t.name, t.dims) for t in io.outputs] == [(t.name, t.dims) for t in scorer_io(cfg, "fp16").inputs[1:]]
        assert {t.dtype for t in io.outputs} == {"float32"}  # always fp32, like tables.npz
    text = text_io(8, 384)
    assert [(t.name, t.dtype, t.dims) for t in text.inputs] == [
        ("input_ids", "int64", ("classes", "tokens")),
        ("attention_mask", "int64", ("classes", "tokens")),
    ]
    assert text.tensor("local").dims == ("classes", 8, 384) and text.tensor("mask").dtype == "bool"


def test_text_side_needs_minilm_class_text(built, stats, tiny, tmp_path):
    model, schedule, text, _ = built
    with pytest.raises(ConfigError, match="encoded with 'test:random'; build with --no-text-encoder"):
        write_bundle(
            BundleRequest(
                tmp_path / "b",
                model,
                schedule,
                stats,
                text,
                timestep=tiny.t,
                num_noises=J,
                text_encoder=True,
                class_descriptions=["x"] * K,
            )
        )
    assert not (tmp_path / "b").exists()


def test_a_decoupled_bundle_is_written_and_scored_by_every_cpu_backend(tiny, stats, tmp_path):
    """The decoupled variant through the same bundle, manifest, IO spec and backends as the teacher's."""
    from tdsm_edge.runtime.recognizer import ZeroShotRecognizer

    model, schedule, text = tiny.model(attention="decoupled"), DDPMSchedule(ScheduleConfig()), make_text(tiny)
    for block in model.blocks:  # non-zero adaLN so every table matters
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
        torch.nn.init.normal_(block.adaLN_modulation_c[1].weight, std=0.1)
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
    m = write_bundle(
        BundleRequest(
            tmp_path / "student",
            model,
            schedule,
            stats,
            text,
            timestep=tiny.t,
            num_noises=J,
            noise_seed=NOISE_SEED,
            run_config=RunConfig(),
            build_command=COMMAND.format(out=tmp_path / "student", p="fp32"),
        )
    )
    assert m.data["model"]["denoiser"]["attention"] == "decoupled"  # the manifest says which variant
    assert m.io.graphs["scorer"].input_names == ["z", "text_kv", "key_bias", "ada_x", "ada_final"]
    z = tiny.features(5).numpy()
    ref = tdsm_errors(model, schedule, stats, z, text, J, 25, NOISE_SEED)  # the literal loop on the student
    for backend in ("onnxruntime", "torch"):
        rec = ZeroShotRecognizer.load(tmp_path / "student", backend=backend)
        np.testing.assert_allclose(rec.score_features(z), ref, rtol=1e-4, atol=0, err_msg=backend)
        assert rec.variant == "decoupled"
    # the Triton repository serves the student through the same writer: z → errors, the tables baked in
    import onnxruntime as ort

    from export.triton import write_triton_repo

    model_dir = write_triton_repo(tmp_path / "student", tmp_path / "repo", max_batch_size=8)
    served = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in served.get_inputs()] == ["z"]
    np.testing.assert_allclose(served.run(["errors"], {"z": z})[0], ref, rtol=1e-4, atol=0)
