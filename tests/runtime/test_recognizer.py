"""ZeroShotRecognizer on a tiny fp32 bundle: equal to the PyTorch path, class subsets, refusals, input errors."""

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
from tdsm_edge.runtime import Prediction, ZeroShotRecognizer

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-4


@pytest.fixture(scope="module")
def rec(runtime_bundle) -> ZeroShotRecognizer:
    return ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)


def test_predictions_equal_the_pytorch_path(rec, runtime_bundle):
    raw = runtime_bundle.windows(per_class=2)  # (10, 2, T, V, 3), two of each bundle class
    ref = runtime_bundle.reference(raw)  # (10, K)
    assert rec.classes == runtime_bundle.names and rec.backend == "onnxruntime"
    batch = rec.predict_batch(raw)  # one (B, M, T, V, 3) array
    listed = rec.predict_batch(list(raw))  # a list of (M, T, V, 3) windows
    singles = [rec.predict(w) for w in raw[:3]]
    assert len(batch) == len(listed) == len(raw)
    got = np.stack([p.errors for p in batch])
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)
    np.testing.assert_allclose(np.stack([p.errors for p in listed]), ref, rtol=RTOL, atol=0)
    np.testing.assert_allclose(np.stack([p.errors for p in singles]), ref[:3], rtol=RTOL, atol=0)
    assert [p.index for p in batch] == ref.argmin(1).tolist()
    for p, r in zip(batch, ref):
        assert isinstance(p, Prediction) and p.label == rec.classes[p.index] and p.latency_ms > 0
        s = np.sort(r)
        assert p.margin >= 0 and p.margin == pytest.approx(s[1] - s[0], rel=1e-3, abs=1e-6)
        top = p.topk(3)
        assert [n for n, _ in top] == [rec.classes[i] for i in np.argsort(p.errors)[:3]] and top[0][0] == p.label
        assert len(p.topk(99)) == len(rec.classes)
    with pytest.raises(ValueError):
        batch[0].errors[0] = 0.0  # a prediction's scores are read-only
    assert rec.predict_batch([]) == []


def test_score_features_equal_the_pytorch_scorer(rec, runtime_bundle):
    raw = runtime_bundle.windows(per_class=1, seed=3)
    z = runtime_bundle.features(raw)  # torch encoder features (N, Dz)
    got = rec.score_features(z)
    assert got.shape == (len(raw), len(rec.classes)) and got.dtype == np.float32
    np.testing.assert_allclose(got, runtime_bundle.reference(raw), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(rec.score_features(z.astype(np.float64)), got)
    with pytest.raises(InputError, match="z must be"):
        rec.score_features(z[:, :-1])
    with pytest.raises(InputError, match="NaN or infinite"):
        rec.score_features(np.full_like(z, np.nan))


def test_window_forms_give_the_same_prediction(rec, runtime_bundle):
    w = runtime_bundle.windows(per_class=1, seed=5)[0]  # (2, T, V, 3); synthact's body 1 is zeros here
    assert not w[1].any()
    want = rec.predict(w).errors
    np.testing.assert_array_equal(rec.predict(w[0]).errors, want)  # (T, V, 3): one body
    np.testing.assert_array_equal(rec.predict(w.astype(np.float64)).errors, want)  # float64 is cast
    fortran = np.asfortranarray(w)
    assert not fortran.flags.c_contiguous
    np.testing.assert_array_equal(rec.predict(fortran).errors, want)
    strided = np.repeat(w, 2, axis=1)[:, ::2]  # a non-contiguous view equal to w
    np.testing.assert_array_equal(rec.predict(strided).errors, want)


def test_active_class_subset_equals_those_columns(runtime_bundle):
    rec = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)  # its own: the subset is state
    raw = runtime_bundle.windows(per_class=1, seed=9)
    full = np.stack([p.errors for p in rec.predict_batch(raw)])
    names = rec.classes
    pick = [names[3], names[0]]
    assert rec.set_active_classes(pick) == pick and rec.classes == pick and rec.all_classes == names
    sub = rec.predict_batch(raw)
    np.testing.assert_allclose(np.stack([p.errors for p in sub]), full[:, [3, 0]], rtol=1e-6, atol=0)
    assert all(p.label in pick and p.classes == tuple(pick) for p in sub)
    assert rec.score_features(runtime_bundle.features(raw)).shape == (len(raw), 2)
    with pytest.raises(InputError, match="unknown classes \\['kick'\\]: this bundle holds only") as e:
        rec.set_active_classes([names[0], "kick"])
    assert all(n in str(e.value) for n in names)
    with pytest.raises(InputError, match="at least one class"):
        rec.set_active_classes([])
    with pytest.raises(InputError, match="list of class names"):
        rec.set_active_classes(names[0])
    with pytest.raises(InputError, match="repeated"):
        rec.set_active_classes([names[0], names[0]])
    assert rec.classes == pick  # a refused call changes nothing
    assert rec.set_active_classes(None) == names


def test_tampered_bundle_is_refused_before_anything_runs(runtime_bundle, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(runtime_bundle.dir, path)
    tables = dict(np.load(path / "tables.npz"))
    tables["ada_x"][0, 0, 0, 0] += 1e-3
    np.savez(path / "tables.npz", **tables)
    with pytest.raises(BundleError, match=r"tables.npz has sha256 .* the manifest records") as e:
        ZeroShotRecognizer.load(path)
    assert "Rebuild the bundle with: python -m export.build_engine" in str(e.value)
    with pytest.raises(BundleError, match="not an engine bundle"):
        ZeroShotRecognizer.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "backend,match",
    [("tensorrt", "tensorrt is not installed|has no TensorRT plan"), ("cuda", "backend must be one of")],
)
def test_unavailable_backends_are_refused(runtime_bundle, backend, match):
    # the test bundle has no plan, so TensorRT is refused with or without the package
    with pytest.raises((ConfigError, MissingDependencyError), match=match):
        ZeroShotRecognizer.load(runtime_bundle.dir, backend=backend)


def _bad_windows(T: int) -> list:
    good = np.random.default_rng(0).normal(size=(2, T, 25, 3)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[0, 1, 2, 0] = np.nan
    inf[1, 0, 0, 2] = np.inf
    return [
        (good[0, 0], "2 dims.*expected \\(T, 25, 3\\) or \\(M, T, 25, 3\\)"),
        (good[None], "5 dims.*For several windows use predict_batch"),
        (good[..., :24, :], "24 joints but this bundle's layout 'ntu25' has 25"),
        (good[..., :2], "last axis must be the 3 coordinates"),
        (good[:, :0], "empty"),
        (nan, "1 NaN or infinite coordinates; mark untracked joints with exact zeros"),
        (inf, "NaN or infinite"),
        ((good * 100).astype(np.int64), "dtype int64, but coordinates must be floats"),
        (good > 0, "dtype bool"),
        (np.zeros_like(good), "all zeros: no joint is tracked"),
        ([["a"]], "dtype <U1"),
    ]


def test_bad_windows_raise_input_errors_that_say_what_and_how(rec, runtime_bundle):
    for window, match in _bad_windows(runtime_bundle.frames):
        with pytest.raises(InputError, match=match):
            rec.predict(window)
    good = runtime_bundle.windows(per_class=1)
    zero = good.copy()
    zero[2] = 0
    with pytest.raises(InputError, match=r"windows\[2\] is all zeros"):
        rec.predict_batch(zero)
    with pytest.raises(InputError, match=r"windows\[1\] has 24 joints"):
        rec.predict_batch([good[0], good[1][..., :24, :]])
    with pytest.raises(InputError, match="\\(B, M, T, V, 3\\) array or a list"):
        rec.predict_batch(good[0])  # a 4-d array is ambiguous
    with pytest.raises(InputError, match="list of windows"):
        rec.predict_batch(7)
    with pytest.raises(InputError, match="positive int"):
        rec.predict(good[0]).topk(0)


def test_runtime_never_imports_torch(runtime_bundle):
    window = runtime_bundle.windows(per_class=1)[0]
    npy = runtime_bundle.dir.parent / "window.npy"
    np.save(npy, window)
    code = (
        "import sys, numpy as np\n"
        "import tdsm_edge.runtime\n"
        "from tdsm_edge import ZeroShotRecognizer\n"
        "assert ZeroShotRecognizer is tdsm_edge.runtime.ZeroShotRecognizer\n"
        f"rec = tdsm_edge.runtime.ZeroShotRecognizer.load({str(runtime_bundle.dir)!r}, threads=1)\n"
        f"pred = rec.predict(np.load({str(npy)!r}))\n"
        "assert pred.label in rec.classes and pred.errors.shape == (len(rec.classes),)\n"
        "from tdsm_edge import ActionStream\n"
        "stream = ActionStream(rec, stride=4)\n"
        f"preds = [stream.push(f) for f in np.load({str(npy)!r}).transpose(1, 0, 2, 3)]\n"
        "assert preds[-1] is not None and preds[-1].label in rec.classes\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'export' not in sys.modules, 'the runtime imported export'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_open_set_answers_none_of_these_below_the_margin(runtime_bundle, tmp_path):
    from tdsm_edge.runtime import NONE_LABEL

    rec = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)
    raw = runtime_bundle.windows(per_class=2, seed=13)
    plain = rec.predict_batch(raw)
    margins = np.array([p.margin for p in plain])
    with pytest.raises(ConfigError, match="no calibrated open-set threshold.*threshold=.*rebuild"):
        rec.set_open_set()  # the fixture bundle was built with --no-verify
    thr = float(np.median(margins))
    assert rec.set_open_set(threshold=thr) == thr
    got = rec.predict_batch(raw)
    for p, q in zip(got, plain):
        np.testing.assert_array_equal(p.errors, q.errors)
        if q.margin < thr:
            assert (p.label, p.index, p.known) == (NONE_LABEL, -1, False)
        else:
            assert (p.label, p.index, p.known) == (q.label, q.index, True)
    assert 0 < sum(not p.known for p in got) < len(got)
    assert rec.set_open_set(False) is None and all(p.known for p in rec.predict_batch(raw))
    for bad in (-1.0, float("nan"), "0.1", True):
        with pytest.raises(InputError, match="threshold must be"):
            rec.set_open_set(threshold=bad)
    # a calibrated bundle: the manifest's threshold (manifest.json itself is not hashed)
    path = tmp_path / "calibrated"
    shutil.copytree(runtime_bundle.dir, path)
    data = json.loads((path / "manifest.json").read_text())
    data["open_set"] = {"threshold": thr, "num_classes": len(rec.classes), "calibrated_on": "validation"}
    seal_manifest(path, data)
    cal = ZeroShotRecognizer.load(path, threads=1)
    assert cal.set_open_set() == thr
    assert [p.known for p in cal.predict_batch(raw)] == [p.known for p in got]


def test_io_binding_path_equals_plain_feeds(runtime_bundle):
    """The GPU path (tables bound once as OrtValues, re-bound after a class change), exercised on the CPU."""
    from tdsm_edge.runtime.ort_backend import OrtBackend

    plain, bound = OrtBackend(runtime_bundle.dir, threads=1), OrtBackend(runtime_bundle.dir, threads=1, io_binding=True)
    assert not plain.io_binding and bound.io_binding  # auto: off on the CPU provider
    z = runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=2))
    np.testing.assert_array_equal(bound.errors(z), plain.errors(z))
    first = bound._bound[1]
    np.testing.assert_array_equal(bound.errors(z[:3]), plain.errors(z[:3]))
    assert bound._bound[1] is first  # not re-uploaded for the same class set
    names = plain.classes
    bound.select([names[4], names[1]])
    np.testing.assert_array_equal(bound.errors(z), plain.errors(z)[:, [4, 1]])


def test_row_bounded_chunks_equal_one_call(runtime_bundle):
    """The CPU default cuts a batch into chunks of <= max_rows scoring rows (B·K·J): same scores."""
    from tdsm_edge.runtime.batching import CPU_MAX_ROWS
    from tdsm_edge.runtime.ort_backend import OrtBackend

    one, small = (
        OrtBackend(runtime_bundle.dir, threads=1, max_rows=10**9),
        OrtBackend(runtime_bundle.dir, threads=1, max_rows=7),
    )
    assert OrtBackend(runtime_bundle.dir, threads=1).max_rows == CPU_MAX_ROWS  # the CPU provider's default
    z = runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=3))
    K, J = len(one.classes), one.num_noises
    assert 7 < K * J  # so every chunk is a single sample here
    assert [n for n, _ in small.feeds(z)] == [1] * len(z)
    np.testing.assert_allclose(small.errors(z), one.errors(z), rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="max_rows must be a positive int"):
        OrtBackend(runtime_bundle.dir, max_rows=0)
