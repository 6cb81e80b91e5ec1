"""Property tests over malformed inputs: every runtime call returns a valid result or raises InputError.

Hypothesis draws a *recipe* (which synthact window, its length, rank, joint/coordinate count, dtype,
memory layout, special values, a seed); numpy builds the array from it, so an example costs one small
call and a failure shrinks to a readable recipe. Regressions found this way are kept as `@example`s.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tdsm_edge.errors import InputError
from tdsm_edge.runtime import ActionStream, Prediction, ZeroShotRecognizer

V = 25
# each tuple repeats its well-formed choice, so that a good share of examples reaches the graphs
DTYPES = ("float32",) * 4 + ("float64", "float16", "int64", "int32", "bool", "complex64", "object", "str")
SPECIALS = ("none",) * 3 + ("nan", "inf", "-inf", "zero_frame", "all_zero", "huge", "extreme", "tiny", "overflow")
LAYOUTS = ("c", "c", "fortran", "strided", "reversed")
SHAPES = ("MTV3",) * 3 + ("TV3",) * 3 + ("V3", "BMTV3", "V0", "V17", "V24", "V33", "C1", "C2", "C4", "T0", "M0")
LENGTHS = (1, 2, 3, 16, 32)  # T; the bundle's window is 16 frames
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Recipe(NamedTuple):
    """How to cut a malformed array out of a good synthact window (see `_window`)."""

    sample: int = 0
    T: int = 16
    shape: str = "MTV3"
    dtype: str = "float32"
    special: str = "none"
    layout: str = "c"
    seed: int = 0


recipes = st.one_of(
    st.builds(
        Recipe,
        st.integers(0, 4),
        st.sampled_from(LENGTHS),
        st.sampled_from(SHAPES),
        st.sampled_from(DTYPES),
        st.sampled_from(SPECIALS),
        st.sampled_from(LAYOUTS),
        st.integers(0, 2**16),
    ),
    # well-formed but for values and layout: these reach the graphs
    st.builds(
        Recipe,
        st.integers(0, 4),
        st.sampled_from(LENGTHS),
        st.sampled_from(["MTV3", "TV3"]),
        st.sampled_from(["float32", "float64", "float16"]),
        st.sampled_from(["none", "zero_frame", "huge", "tiny", "extreme"]),
        st.sampled_from(LAYOUTS),
        st.integers(0, 2**16),
    ),
)


@pytest.fixture(scope="module")
def rec(runtime_bundle) -> ZeroShotRecognizer:
    """One recognizer for the module (hypothesis reruns a test body many times)."""
    return ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)


class _Windows(np.ndarray):
    """An ndarray whose repr is one line (hypothesis prints the test's arguments when a property fails)."""

    def __repr__(self) -> str:
        return f"<synthact windows {self.shape} {self.dtype}>"


@pytest.fixture(scope="module")
def good(runtime_bundle) -> np.ndarray:
    """Five real synthact windows `(5, 2, T, V, 3)` float32, the base the malformed inputs are cut from."""
    return runtime_bundle.windows(per_class=1, seed=13).view(_Windows)


def _window(good: np.ndarray, r: Recipe) -> np.ndarray:
    """The array a recipe describes."""
    w = np.asarray(good[r.sample % len(good)])  # (2, T0, V, 3)
    base = np.resize(w, (2, r.T, V, 3)) if r.T > w.shape[1] else w[:, : r.T]  # (2, T, V, 3)
    s = r.shape
    if s == "TV3":
        base = base[0]
    elif s == "V3":
        base = base[0, 0]
    elif s == "BMTV3":
        base = base[None]
    elif s.startswith("V") and s != "V3":  # wrong joint count
        n = int(s[1:])
        base = base[..., :n, :] if n <= V else np.concatenate([base, base[..., : n - V, :]], axis=-2)
    elif s.startswith("C"):  # wrong coordinate count
        n = int(s[1:])
        base = base[..., :n] if n <= 3 else np.concatenate([base, base[..., : n - 3]], axis=-1)
    elif s == "T0":
        base = base[:, :0]
    elif s == "M0":
        base = base[:0]
    return _variant(base, r.dtype, r.special, r.layout, r.seed)


def _variant(base: np.ndarray, dtype: str, special: str, layout: str, seed: int) -> np.ndarray:
    """`base` with special values, cast to `dtype` and laid out in memory as `layout`."""
    rng = np.random.default_rng(seed)
    a = np.array(base, np.float64)
    flat = a.reshape(-1)
    if flat.size:
        i = rng.integers(flat.size)
        if special in ("nan", "inf", "-inf"):
            flat[i] = float(special)
        elif special == "huge":
            a *= 1e30  # finite in float32, far beyond camera metres
        elif special == "extreme":
            flat[i] = 3e38  # near float32's max: finite, but the graphs overflow
        elif special == "tiny":
            a *= 1e-30
        elif special == "overflow":
            flat[i] = 1e300  # finite float64, inf as float32
        elif special == "all_zero":
            a[...] = 0
        elif special == "zero_frame" and a.ndim >= 3:
            a[..., rng.integers(a.shape[-3]), :, :] = 0  # one frame (of every body) untracked
    if dtype in ("str", "object"):
        out = a.astype(dtype)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            out = a.astype(dtype)
    if layout == "fortran":
        out = np.asfortranarray(out)
    elif layout == "strided" and out.ndim:
        out = np.repeat(out, 2, axis=0)[::2]  # a non-contiguous view, same values
    elif layout == "reversed" and out.ndim:
        out = out[::-1]
    return out


def _valid(p, classes: list[str]) -> None:
    """A Prediction that keeps its contract: finite scores, label in classes, margin >= 0."""
    K = len(classes)
    assert isinstance(p, Prediction)
    assert p.classes == tuple(classes) and p.label == classes[p.index]
    assert p.errors.shape == (K,) and p.errors.dtype == np.float32 and np.isfinite(p.errors).all()
    assert p.index == int(np.argmin(p.errors))
    assert p.margin >= 0 and (np.isfinite(p.margin) or K == 1)
    assert np.isfinite(p.latency_ms) and p.latency_ms >= 0


def _either(call):
    """The call's result, or None when it raised InputError (any other exception fails the test)."""
    try:
        out = call()
    except InputError as e:
        assert str(e), "an InputError must say what went wrong"
        event("InputError")
        return None
    event("returned")
    return out


@example(r=Recipe(special="extreme"))  # was: NaN scores in a Prediction (label = class 0, margin NaN)
@example(r=Recipe(special="huge", dtype="float64"))  # 1e30: finite, saturated scores
@example(r=Recipe(T=1, shape="TV3"))
@given(r=recipes)
@settings(max_examples=400, **SETTINGS)
def test_predict_gives_a_valid_prediction_or_input_error(rec, good, r):
    p = _either(lambda: rec.predict(_window(good, r)))
    if p is not None:
        _valid(p, rec.classes)


@example(rs=[], form="array")  # was: np.stack([]) raised a bare ValueError for a (0, M, T, V, 3) array
@example(rs=[Recipe(), Recipe(special="extreme")], form="list")  # one overflowing window refuses the batch
@given(
    rs=st.lists(recipes, max_size=3),
    form=st.sampled_from(["list", "list", "tuple", "array", "generator", "none", "dict"]),
)
@settings(max_examples=150, **SETTINGS)
def test_predict_batch_gives_valid_predictions_or_input_error(rec, good, rs, form):
    ws = [_window(good, r) for r in rs]
    if form == "array":
        if not ws:
            batch = np.zeros((0, 2, 4, V, 3), np.float32)
        else:  # stackable: equal shapes (else the first, repeated)
            batch = np.stack(ws if len({w.shape for w in ws}) == 1 else [ws[0]] * len(ws))
    else:
        batch = {
            "list": ws,
            "tuple": tuple(ws),
            "generator": (w for w in ws),
            "none": None,
            "dict": {"w": ws[0]} if ws else {},
        }[form]
    out = _either(lambda: rec.predict_batch(batch))
    if out is not None:
        assert isinstance(out, list) and len(out) == len(ws)
        for p in out:
            _valid(p, rec.classes)


class FeatureRecipe(NamedTuple):
    form: str = "array"  # or "ragged", "none", "text", "nested_list" (not an array)
    B: int = 2
    shape: str = "BD"  # BD, D, BD-1, BD+1, B1D, scalar
    dtype: str = "float32"
    special: str = "none"
    layout: str = "c"
    seed: int = 0


feature_recipes = st.builds(
    FeatureRecipe,
    st.sampled_from(("array",) * 6 + ("ragged", "none", "text", "nested_list")),
    st.sampled_from([0, 1, 2, 5]),
    st.sampled_from(("BD",) * 4 + ("D", "BD-1", "BD+1", "B1D", "scalar")),
    st.sampled_from(DTYPES),
    st.sampled_from(SPECIALS),
    st.sampled_from(LAYOUTS),
    st.integers(0, 2**16),
)


def _features(r: FeatureRecipe, dz: int):
    if r.form != "array":
        return {"ragged": [[1.0] * dz, [1.0]], "none": None, "text": "z", "nested_list": [[0.5] * dz] * 2}[r.form]
    shape = {
        "BD": (r.B, dz),
        "D": (dz,),
        "BD-1": (r.B, dz - 1),
        "BD+1": (r.B, dz + 1),
        "B1D": (r.B, 1, dz),
        "scalar": (),
    }[r.shape]
    return _variant(np.random.default_rng(r.seed).normal(size=shape), r.dtype, r.special, r.layout, r.seed)


@example(r=FeatureRecipe(form="ragged"))  # was: a bare ValueError from np.asarray
@example(r=FeatureRecipe(special="extreme"))  # was: NaN/Inf errors returned as scores
@example(r=FeatureRecipe(dtype="float64", special="overflow"))  # was: finite float64, inf after the cast, NaN out
@given(r=feature_recipes)
@settings(max_examples=300, **SETTINGS)
def test_score_features_gives_finite_errors_or_input_error(rec, r):
    z = _features(r, rec._scorer.z_dim)
    e = _either(lambda: rec.score_features(z))
    if e is not None:
        assert e.dtype == np.float32 and e.shape == (len(z), len(rec.classes)) and np.isfinite(e).all()


@example(names=0)  # was: TypeError ('int' object is not iterable) instead of InputError
@given(
    names=st.one_of(
        st.none(),
        st.text(max_size=8),
        st.integers(),
        st.floats(allow_nan=True),
        st.lists(
            st.one_of(st.sampled_from(["kick", "", "WAVE"]), st.integers(0, 6), st.none(), st.binary(max_size=3)),
            max_size=4,
        ),
        st.lists(st.integers(0, 4), max_size=6).map(tuple),  # indices into the bundle's names: subsets, repeats, ()
        st.lists(st.integers(0, 4), min_size=1, max_size=5, unique=True).map(tuple),  # valid subsets, any order
    )
)
@settings(max_examples=200, **SETTINGS)
def test_set_active_classes_applies_or_raises_and_changes_nothing(rec, good, names):
    every = rec.all_classes
    if isinstance(names, tuple):
        names = [every[n] for n in names]  # real names (maybe repeated, maybe none)
    before = rec.classes
    try:
        got = _either(lambda: rec.set_active_classes(names))
        if got is None:
            assert rec.classes == before  # a refused call changes nothing
        else:
            want = every if names is None else list(names)
            assert got == rec.classes == want
            _valid(rec.predict(good[0]), want)
    finally:
        rec.set_active_classes(None)


def test_set_active_classes_reads_an_iterable_once(rec):
    pick = rec.all_classes[1:3]
    try:  # was: the name check consumed the generator, then "needs at least one class name"
        assert rec.set_active_classes(n for n in pick) == pick
    finally:
        rec.set_active_classes(None)


@example(k=True)  # was: taken as k=1 (bool is an int subclass); ActionStream refuses bools too
@given(
    k=st.one_of(
        st.integers(-3, 12),
        st.booleans(),
        st.floats(),
        st.text(max_size=2),
        st.none(),
        st.sampled_from([np.int64(2), np.int32(0), np.float64(2.0), np.uint8(3)]),
    )
)
@settings(max_examples=100, **SETTINGS)
def test_topk_gives_the_k_best_or_input_error(rec, good, k):
    p = rec.predict(good[1])
    top = _either(lambda: p.topk(k))
    if isinstance(k, bool):
        assert top is None
    if top is not None:
        assert len(top) == min(int(k), len(p.classes)) >= 1
        assert top[0] == (p.label, float(p.errors[p.index]))
        assert [s for _, s in top] == sorted(s for _, s in top)


# a frame: ("good", sample, t, one_body) | ("array", Recipe) with the time axis dropped | a non-array
frame_recipes = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 4), st.integers(0, 15), st.booleans()),
    st.tuples(st.just("array"), recipes),
    st.sampled_from([("list",), ("none",), ("text",), ("ragged",)]),
)


def _frame(good: np.ndarray, f: tuple):
    if f[0] == "good":
        x = np.asarray(good[f[1], :, f[2]])  # (2, V, 3)
        return x[0] if f[3] else x
    if f[0] == "array":
        a = _window(good, f[1])
        return a[..., 0, :, :] if a.ndim >= 3 and a.shape[-3] else a  # (M, V, 3) / (V, 3) from a window
    return {"list": np.asarray(good[0, 0, 0]).tolist(), "none": None, "text": "frame", "ragged": [[1.0, 2.0], [3.0]]}[
        f[0]
    ]


@example(
    fs=[("array", Recipe(T=1, special="extreme"))] + [("good", 0, t, True) for t in range(5)], window=4, stride=2
)  # was: the refused window's InputError escaped from push
@example(fs=[("array", Recipe(T=1, dtype="float64", special="overflow"))], window=1, stride=1)  # a cast warning leaked
@given(fs=st.lists(frame_recipes, min_size=1, max_size=14), window=st.integers(1, 6), stride=st.integers(1, 3))
@settings(max_examples=150, **SETTINGS)
def test_stream_push_never_raises_for_bad_frames_and_counts_them(rec, good, fs, window, stride):
    stream = ActionStream(rec, window=window, stride=stride, log_every=10**6)
    with warnings.catch_warnings():  # storing a bad frame does not even warn
        warnings.filterwarnings("error", "overflow encountered in cast", RuntimeWarning)
        for f in fs:
            p = stream.push(_frame(good, f))
            if p is not None:
                _valid(p, rec.classes)
    s, n = stream.stats, len(fs)
    assert s.pushed == n and s.valid + s.skipped == n
    assert s.valid >= sum(1 for f in fs if f[0] in ("good", "list") and np.asarray(_frame(good, f)).any())
    assert s.skipped >= sum(1 for f in fs if f[0] in ("none", "text", "ragged"))
    assert s.windows_scored + s.windows_low_valid + s.windows_failed == max(0, (n - window) // stride + 1)


def test_stream_counts_a_window_the_recognizer_refuses(rec, good):
    frames = [np.array(good[0, 0, t]) for t in range(6)]  # (V, 3) each
    frames[0][5, 0] = 3e38  # finite, so the frame itself is valid
    stream = ActionStream(rec, window=4, stride=2)
    out = [stream.push(f) for f in frames]  # windows end at pushes 4 and 6
    s = stream.stats
    assert (s.valid, s.windows_failed, s.windows_scored) == (6, 1, 1)
    assert out[3] is None and out[5] is not None  # the window without it is scored
