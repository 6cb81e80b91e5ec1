"""The TensorRT backend's wiring, run here with a fake `tensorrt` and cuda-python (tests/helpers/fake_tensorrt.py).

The fakes run the bundle's own ONNX graphs with onnxruntime on numpy "device" memory that behaves
like CUDA where the wiring could go wrong (stream order, bounds, capture rules), so these tests check
what our code does — plan choice, per-thread contexts, table uploads, batch and class padding, CUDA
graph capture and replay — not TensorRT. With TensorRT and a GPU (`tensorrt` marker), a real plan is
built and compared with onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from export.bundle_stage import seal_manifest
from helpers.fake_tensorrt import fake_cudart, fake_tensorrt, write_plan
from tdsm_edge.errors import BundleError, ConfigError, EngineIncompatibleError, InputError
from tdsm_edge.runtime import ZeroShotRecognizer, cuda_memory
from tdsm_edge.runtime.iospec import BATCH, CLASSES, IOSpec
from tdsm_edge.runtime.manifest import MANIFEST, Manifest, load_manifest
from tdsm_edge.runtime.ort_backend import OrtBackend
from tdsm_edge.runtime.trt_backend import TrtBackend, rebuild_command

RTOL, ATOL = 1e-6, 1e-7
PATHS = ("cuda.bindings.runtime", "cuda.cudart")


@pytest.fixture
def fakes(monkeypatch):
    """install(path=..., version=..., devices=..., gpu_name=...) puts a fake cuda-python at `path` (the
    other import path made unimportable) and a fake tensorrt over it; returns (rt, trt)."""

    def install(path: str = PATHS[0], version: str = "10.3.0", **cuda) -> SimpleNamespace:
        rt = fake_cudart(path, **cuda)
        monkeypatch.setitem(sys.modules, path, rt)
        monkeypatch.setitem(sys.modules, PATHS[1 - PATHS.index(path)], None)
        trt = fake_tensorrt(rt, version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return SimpleNamespace(rt=rt, trt=trt)

    return install


def with_plans(src: Path, dst: Path, *plans: dict) -> Manifest:
    """A copy of bundle `src` at `dst` with fake plans recorded in its manifest (hashed like every file).

    Each plan: graph, and optionally batch / classes (min, opt, max) for its profile (default: the IO
    spec's axes), profiles (identical copies of it, default 1), tensorrt_version, gpu_name,
    compute_capability, onnx (the graph whose ONNX it runs).
    """
    shutil.copytree(src, dst)
    data = json.loads((dst / MANIFEST).read_text())
    io = IOSpec.from_dict(data["io"])
    for i, p in enumerate(plans):
        graph = p["graph"]
        axes = {BATCH: p.get("batch"), CLASSES: p.get("classes")}
        axes = {a: r or (io.axes[a].min, io.axes[a].opt, io.axes[a].max) for a, r in axes.items()}
        profile = {
            t.name: {k: list(t.shape({a: r[j] for a, r in axes.items()})) for j, k in enumerate(("min", "opt", "max"))}
            for t in io.graphs[graph].inputs
        }
        version = p.get("tensorrt_version", "10.3.0")
        name = f"{graph}_{data['precision']}.trt{version}.{i}.plan"
        profiles = p.get("profiles", 1)
        blob = write_plan(dst / name, dst / data["graphs"][p.get("onnx", graph)]["file"], profile, profiles)
        digest = hashlib.sha256(blob).hexdigest()
        data["plans"].append(
            dict(
                file=name,
                sha256=digest,
                graph=graph,
                precision=data["precision"],
                tensorrt_version=version,
                gpu_name=p.get("gpu_name", "NVIDIA Fake GPU"),
                compute_capability=p.get("compute_capability", "8.7"),
                profile=profile,
                **({"profiles": profiles} if profiles > 1 else {}),
            )
        )
        data["files"][name] = digest
    seal_manifest(dst, data)
    return load_manifest(dst)


@pytest.fixture
def bundle(runtime_bundle, tmp_path):
    """bundle(*plans, name=...) → the tiny bundle's Manifest with those fake plans (default: scorer + encoder)."""

    def make(*plans: dict, name: str = "trt") -> Manifest:
        return with_plans(runtime_bundle.dir, tmp_path / name, *(plans or ({"graph": "scorer"}, {"graph": "encoder"})))

    return make


@pytest.fixture(scope="module")
def z(runtime_bundle) -> np.ndarray:
    return runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=5))  # (10, Dz)


def uploads(fakes_ns) -> Counter:
    """Host → device copies per tensor name (device addresses mapped back through every context's bindings)."""
    names = {a: n for e in fakes_ns.trt.engines for c in e.contexts for n, a in c.addr.items()}
    return Counter(names[dst] for what, dst, *_ in fakes_ns.rt.log if what == "memcpy_h2d")


def executed(fakes_ns, graph: str, name: str) -> list[int]:
    """Axis 0 of input `name` in every run of `graph`'s engine, in order."""
    return [shapes[name][0] for g, shapes, _ in fakes_ns.trt.executed if g.startswith(graph)]


# ---------------------------------------------------------------- results and shapes
def test_tensorrt_backend_equals_onnxruntime_end_to_end(fakes, bundle, runtime_bundle):
    f = fakes()
    m = bundle()
    trt_rec = ZeroShotRecognizer.load(m.root, backend="tensorrt")
    ort_rec = ZeroShotRecognizer.load(m.root, backend="onnxruntime", threads=1)
    assert trt_rec.backend == "tensorrt"
    assert trt_rec._scorer.device == "TensorRT 10.3.0 on NVIDIA Fake GPU (compute 8.7), fp32"
    raw = runtime_bundle.windows(per_class=2, seed=3)  # 10 windows; the plans take batches of 1..4
    got, want = trt_rec.predict_batch(raw), ort_rec.predict_batch(raw)
    np.testing.assert_allclose(
        np.stack([p.errors for p in got]), np.stack([p.errors for p in want]), rtol=RTOL, atol=ATOL
    )
    assert [p.label for p in got] == [p.label for p in want]
    x = m.io.graphs["encoder"].input_names[0]
    assert executed(f, "encoder", x) == [4, 4, 2] and executed(f, "scorer", "z") == [4, 4, 2]
    assert f.trt.calls["deserialize_cuda_engine"] == 2  # one engine per graph
    assert ZeroShotRecognizer.load(m.root).backend == "tensorrt"  # auto prefers it


def test_batches_are_cut_to_the_plan_profile(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer", "batch": (2, 2, 3)})
    scorer, ort = TrtBackend(m), OrtBackend(m, "cpu", 1)
    np.testing.assert_allclose(scorer.errors(z[:7]), ort.errors(z[:7]), rtol=RTOL, atol=ATOL)
    assert executed(f, "scorer", "z") == [3, 3, 2]  # 7 = 3 + 3 + 1 zero-padded up to the min 2
    np.testing.assert_allclose(scorer.errors(z[:1]), ort.errors(z[:1]), rtol=RTOL, atol=ATOL)
    assert executed(f, "scorer", "z")[-1] == 2
    assert scorer.errors(z[:0]).shape == (0, 5)
    with pytest.raises(InputError, match="Dz"):
        scorer.errors(z[:, :3])


def test_class_tables_go_to_the_device_once_per_class_set_version(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    tables = m.io.graphs["scorer"].input_names[1:]
    for _ in range(3):  # 10 rows: chunks of 4, 4, 2 per call
        np.testing.assert_allclose(scorer.errors(z), full, rtol=RTOL, atol=ATOL)
    up = uploads(f)
    assert up["z"] == 9 and {up[t] for t in tables} == {1}
    names = scorer.class_set.names
    scorer.class_set.select([names[3], names[0]])  # a new version: uploaded once more, then resident
    for _ in range(2):
        np.testing.assert_allclose(scorer.errors(z), full[:, [3, 0]], rtol=RTOL, atol=ATOL)
    up = uploads(f)
    assert up["z"] == 15 and {up[t] for t in tables} == {2}
    assert f.rt.calls["cudaMalloc"] == len(tables) + 2  # buffers sized for the profile max once: never regrown


def _hammer(scorer, z, threads: int = 4, calls: int = 3) -> list[np.ndarray]:
    """`calls` scorer.errors(z) from each of `threads` threads started together; their results."""
    barrier, results, errors = threading.Barrier(threads), [], []

    def work():
        try:
            barrier.wait()
            for _ in range(calls):
                results.append(scorer.errors(z))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    assert len(results) == threads * calls
    return results


def test_threads_share_the_one_context_of_a_single_profile_plan(fakes, bundle, z):
    """TensorRT: contexts in concurrent use need separate optimization profiles (issue 15, finding 1). The fake
    refuses two contexts on one profile; a one-profile plan runs every thread's calls on one context, in turn."""
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    for r in _hammer(scorer, z):
        np.testing.assert_allclose(r, full, rtol=RTOL, atol=ATOL)
    assert f.trt.calls["deserialize_cuda_engine"] == 1
    (context,) = f.trt.engines[0].contexts
    assert len(context.threads) == 4 and context.profile == 0  # every thread ran on it, one call at a time
    assert {uploads(f)[t] for t in m.io.graphs["scorer"].input_names[1:]} == {1}  # tables uploaded once
    scorer.close()
    assert f.rt.buffers == {} and f.rt.calls["cudaStreamDestroy"] == 1


def test_a_plan_with_p_profiles_runs_up_to_p_contexts_each_on_its_own_profile(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    for r in _hammer(scorer, z, threads=6):
        np.testing.assert_allclose(r, full, rtol=RTOL, atol=ATOL)
    contexts = f.trt.engines[0].contexts
    assert 1 <= len(contexts) <= 2 and scorer.engine.contexts == len(contexts)
    assert sorted(c.profile for c in contexts) == list(range(len(contexts)))  # never two on one profile
    assert len({s for c in contexts for s in c.streams}) == len(contexts)  # a stream each
    assert {uploads(f)[t] for t in m.io.graphs["scorer"].input_names[1:]} == {len(contexts)}  # once per context
    scorer.close()
    assert f.rt.buffers == {} and f.rt.calls["cudaStreamDestroy"] == len(contexts)


def test_the_pool_makes_a_second_context_only_while_the_first_is_busy(fakes, bundle, z):
    """Deterministic: hold context 0 inside one call, run a second call meanwhile; it gets profile 1, and a
    third concurrent call waits for a free context instead of sharing one."""
    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    scorer = TrtBackend(m)
    engine = scorer.engine
    full = OrtBackend(m, "cpu", 1).errors(z[:2])
    np.testing.assert_allclose(scorer.errors(z[:2]), full, rtol=RTOL, atol=ATOL)
    assert engine.contexts == 1  # one caller: one context, whatever P is
    with engine._use() as first, engine._use() as second:
        assert (first.profile, second.profile) == (0, 1)
        waiting = threading.Thread(target=lambda: scorer.errors(z[:2]))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and engine.contexts == 2  # all P busy: it waits
    waiting.join(10)
    assert not waiting.is_alive() and engine.contexts == 2
    assert [c.profile for c in f.trt.engines[0].contexts] == [0, 1]
    scorer.close()
    with pytest.raises(BundleError, match="closed"):
        scorer.errors(z[:2])


def test_reloading_a_plan_drops_the_old_engines_contexts(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z[:2])
    np.testing.assert_allclose(scorer.errors(z[:2]), full, rtol=RTOL, atol=ATOL)
    record = scorer.record
    scorer.engine.load(m.path(record["file"]), expected_record=record, data=m.read_bytes(record["file"]))
    assert scorer.engine.contexts == 0 and f.rt.calls["cudaStreamDestroy"] == 1  # the old context is gone
    np.testing.assert_allclose(scorer.errors(z[:2]), full, rtol=RTOL, atol=ATOL)
    assert [e.created for e in f.trt.engines] == [1, 1]  # the new call ran on the new engine's context


def test_a_failed_allocation_leaves_the_context_usable_and_never_runs_on_freed_memory(fakes, bundle, z):
    """Buffers grow (reserve_max off, TrtEngine's default): an allocation that fails mid-way must not leave
    the context believing it holds buffers it lost, nor enqueue work on a freed address."""
    from tdsm_edge.errors import DeviceError
    from tdsm_edge.runtime.manifest import load_tables
    from tdsm_edge.runtime.trt_engine import TrtEngine

    f = fakes()
    m = bundle({"graph": "scorer"})
    (record,) = m.plans
    eng = TrtEngine(m.path(record["file"]), memory="cuda-python").load(
        expected_record=record, data=m.read_bytes(record["file"])
    )
    tables = {k: v.astype(eng.dtypes[k]) for k, v in load_tables(m).items()}
    full = OrtBackend(m, "cpu", 1).errors(z)
    np.testing.assert_allclose(eng.infer({"z": z[:2], **tables})["errors"], full[:2], rtol=RTOL, atol=ATOL)
    malloc, failing = f.rt.cudaMalloc, iter([True])

    def oom(n):  # the next allocation fails, as cudaMalloc does when the device is full
        return (f.rt.cudaError_t.cudaErrorInvalidValue, 0) if next(failing, False) else malloc(n)

    f.rt.cudaMalloc = oom
    with pytest.raises(DeviceError):
        eng.infer({"z": z[:4], **tables})  # z grows first: its allocation fails
    for n in (4, 4, 2):  # then every call works, with any shape
        np.testing.assert_allclose(eng.infer({"z": z[:n], **tables})["errors"], full[:n], rtol=RTOL, atol=ATOL)
    eng.close()
    assert f.rt.buffers == {}


def test_a_refused_reload_keeps_the_plan_that_was_loaded(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z[:2])
    scorer.errors(z[:2])
    with pytest.raises(BundleError, match="does not match its manifest"):
        scorer.engine.load(m.path(scorer.record["file"]), expected_record=scorer.record, data=b"another plan")
    np.testing.assert_allclose(scorer.errors(z[:2]), full, rtol=RTOL, atol=ATOL)  # still the old, working plan
    assert scorer.engine.contexts == 1 and f.rt.calls["cudaStreamDestroy"] == 0


def test_a_context_made_for_the_old_engine_never_joins_the_reloaded_pool(fakes, bundle, z):
    """A reload while a call is making a context: that context belongs to the old engine and is dropped; the
    call starts over on the new plan."""
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m)
    old = f.trt.engines[0]
    make, started, release = old.create_execution_context, threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return make()

    old.create_execution_context = slow
    errors = []
    caller = threading.Thread(target=lambda: errors.append(_raises(lambda: scorer.errors(z[:2]))))
    caller.start()
    assert started.wait(10)
    record = scorer.record
    scorer.engine.load(m.path(record["file"]), expected_record=record, data=m.read_bytes(record["file"]))
    release.set()
    caller.join(10)
    assert errors == [None]  # it ran, on the new plan
    assert [e.created for e in f.trt.engines] == [1, 1] and scorer.engine.contexts == 1
    assert f.rt.calls["cudaStreamDestroy"] == 1  # the old engine's context was not kept: its stream is gone
    scorer.errors(z[:2])
    assert [e.created for e in f.trt.engines] == [1, 1] and scorer.engine.contexts == 1


def _raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - returned to the test
        return e
    return None


def test_when_fewer_contexts_fit_than_profiles_calls_wait_instead_of_failing(fakes, bundle, z, caplog):
    import logging

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    scorer = TrtBackend(m)
    eng = f.trt.engines[0]
    make = eng.create_execution_context
    eng.create_execution_context = lambda: None if eng.contexts else make()  # only one fits on the device
    full = OrtBackend(m, "cpu", 1).errors(z[:2])
    scorer.errors(z[:2])
    out = []
    with caplog.at_level(logging.WARNING), scorer.engine._use():  # another call holds context 0
        waiting = threading.Thread(target=lambda: out.append(scorer.errors(z[:2])))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # waits for context 0 instead of failing
    waiting.join(10)
    np.testing.assert_allclose(out[0], full, rtol=RTOL, atol=ATOL)
    assert "at most 1 calls run at once" in caplog.text and scorer.engine.contexts == 1
    eng.create_execution_context = lambda: None
    fresh = TrtBackend(m)  # none fits at all: an error, not a wait
    from tdsm_edge.errors import DeviceError

    f.trt.engines[-1].create_execution_context = lambda: None
    with pytest.raises(DeviceError, match="could not create execution context 1"):
        fresh.errors(z[:2])


def test_a_memory_helper_the_caller_passes_is_never_closed_by_the_engine(fakes, bundle, z):
    from tdsm_edge.runtime.cuda_memory import CudaRuntimeMemory
    from tdsm_edge.runtime.manifest import load_tables
    from tdsm_edge.runtime.trt_engine import TrtEngine

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    (record,) = m.plans
    shared = CudaRuntimeMemory()
    eng = TrtEngine(m.path(record["file"]), memory=shared).load(
        expected_record=record, data=m.read_bytes(record["file"])
    )
    tables = {k: v.astype(eng.dtypes[k]) for k, v in load_tables(m).items()}
    with eng._use():  # one stream for every context would mix calls: a shared helper makes a pool of one
        waiting = threading.Thread(target=lambda: eng.infer({"z": z[:2], **tables}))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and eng.contexts == 1
    waiting.join(10)
    assert not waiting.is_alive() and eng.contexts == 1
    eng.infer({"z": z[:2], **tables})
    eng.load(expected_record=record, data=m.read_bytes(record["file"]))  # a reload closes the contexts...
    eng.infer({"z": z[:2], **tables})  # ...but not the caller's helper: its stream still works
    eng.close()
    assert f.rt.calls["cudaStreamDestroy"] == 0 and f.rt.buffers == {}
    shared.close()


def _engine(m):
    """A bare TrtEngine on bundle m's scorer plan (reserve_max as TrtBackend sets it), and its class tables."""
    from tdsm_edge.runtime.manifest import load_tables
    from tdsm_edge.runtime.trt_engine import TrtEngine

    (record,) = [p for p in m.plans if p["graph"] == "scorer"]
    eng = TrtEngine(m.path(record["file"]), memory="cuda-python", reserve_max=True)
    eng.load(expected_record=record, data=m.read_bytes(record["file"]))
    return eng, {k: v.astype(eng.dtypes[k]) for k, v in load_tables(m).items()}


def test_calls_that_cannot_make_any_context_all_fail_none_waits_forever(fakes, bundle, z):
    """Two calls, no context yet, the device holds none: one sees the other still making its context and
    waits for it; when that one fails too, the waiting call must wake and fail, not wait forever."""
    import time

    from tdsm_edge.errors import DeviceError

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    eng, tables = _engine(m)
    arrived, first = threading.Barrier(2), {"A", "B"}

    def create():
        name = threading.current_thread().name
        if name in first:  # each call's first try: both are making a context at once
            first.discard(name)
            arrived.wait(5)
            if name == "B":
                time.sleep(0.3)  # B's failure comes while A already waits for B's context
        return None

    f.trt.engines[-1].create_execution_context = create
    results = {}
    calls = [
        threading.Thread(
            target=lambda n=n: results.update({n: _raises(lambda: eng.infer({"z": z[:2], **tables}))}), name=n
        )
        for n in "AB"
    ]
    for t in calls:
        t.start()
    for t in calls:
        t.join(10)
    assert not any(t.is_alive() for t in calls)
    assert all(isinstance(results[n], DeviceError) for n in "AB"), results


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_reload_during_a_call_never_mixes_the_two_plans(fakes, bundle, z, when):
    """A reload lands while a call waits for a context ("before": the call starts over on the new plan) or
    while it holds one ("after": it finishes on the old plan's context, which is then dropped)."""
    f = fakes()
    m = bundle({"graph": "scorer"})
    eng, tables = _engine(m)
    (record,) = m.plans
    full = OrtBackend(m, "cpu", 1).errors(z)
    acquire, paused, go = eng._acquire, threading.Event(), threading.Event()

    def hooked(reserve, want=None):
        if when == "before":
            paused.set()
            go.wait(10)
            return acquire(reserve, want)
        slot = acquire(reserve, want)
        paused.set()
        go.wait(10)
        return slot

    eng._acquire = hooked
    out = []
    call = threading.Thread(target=lambda: out.append(eng.infer({"z": z[:3], **tables})["errors"]))
    call.start()
    assert paused.wait(10)
    eng._acquire = acquire
    eng.load(expected_record=record, data=m.read_bytes(record["file"]))
    go.set()
    call.join(10)
    np.testing.assert_allclose(out[0], full[:3], rtol=RTOL, atol=ATOL)
    assert eng.contexts == (1 if when == "before" else 0)  # "after": the old context was not pooled again
    eng.close()
    assert f.rt.buffers == {} and f.rt.calls["cudaStreamDestroy"] == f.rt.calls["cudaStreamCreate"]


def test_a_reload_refused_while_reading_the_new_plan_keeps_the_old_one(fakes, bundle, z, monkeypatch):
    f = fakes()
    m = bundle({"graph": "scorer"})
    eng, tables = _engine(m)
    (record,) = m.plans
    eng.infer({"z": z[:2], **tables})

    def no_numpy_type(t):  # TensorRT's nptype on a bfloat16 / fp8 tensor
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    monkeypatch.setattr(f.trt, "nptype", no_numpy_type)
    with pytest.raises(BundleError, match="numpy cannot hold"):
        eng.load(expected_record=record, data=m.read_bytes(record["file"]))
    monkeypatch.undo()
    eng.infer({"z": z[:2], **tables})  # still served by the plan loaded first
    assert eng.contexts == 1


def test_buffers_for_the_max_shapes_are_best_effort(fakes, bundle, z, caplog):
    """A second context whose max-shape buffers do not fit still serves calls (buffers sized per call)."""
    import logging

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    eng, tables = _engine(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    eng.infer({"z": z[:2], **tables})
    malloc, failing = f.rt.cudaMalloc, iter([True])
    f.rt.cudaMalloc = lambda n: (f.rt.cudaError_t.cudaErrorInvalidValue, 0) if next(failing, False) else malloc(n)
    with caplog.at_level(logging.WARNING), eng._use():  # context 0 busy: the call below makes context 1
        out = eng.infer({"z": z[:3], **tables})["errors"]
    np.testing.assert_allclose(out, full[:3], rtol=RTOL, atol=ATOL)
    assert "sizing them per call" in caplog.text and eng.contexts == 2


def test_ctrl_c_while_a_context_is_made_frees_it_and_its_profile(fakes, bundle, z, monkeypatch):
    from tdsm_edge.runtime import cuda_memory

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    eng, tables = _engine(m)
    alloc, interrupts = cuda_memory.CudaRuntimeMemory.alloc, iter([True])

    def interrupted(self, nbytes):
        if next(interrupts, False):
            raise KeyboardInterrupt
        return alloc(self, nbytes)

    monkeypatch.setattr(cuda_memory.CudaRuntimeMemory, "alloc", interrupted)
    with pytest.raises(KeyboardInterrupt):
        eng.infer({"z": z[:2], **tables})
    assert eng.contexts == 0 and f.rt.buffers == {} and f.rt.calls["cudaStreamDestroy"] == 1
    np.testing.assert_allclose(
        eng.infer({"z": z[:2], **tables})["errors"], OrtBackend(m, "cpu", 1).errors(z[:2]), rtol=RTOL, atol=ATOL
    )
    assert [c.profile for c in f.trt.engines[-1].contexts] == [0]  # profile 0 was free again


def test_a_memory_helper_class_is_a_factory(fakes, bundle, z):
    from tdsm_edge.runtime.cuda_memory import CudaRuntimeMemory
    from tdsm_edge.runtime.trt_engine import TrtEngine

    fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    (record,) = m.plans
    eng = TrtEngine(memory=CudaRuntimeMemory).load(
        m.path(record["file"]), expected_record=record, data=m.read_bytes(record["file"])
    )
    with eng._use() as a, eng._use() as b:  # two contexts, a helper (stream) each
        assert a.mem is not b.mem and a.owns_mem and b.owns_mem
    eng.close()


def test_a_profile_tensorrt_refuses_is_an_error(fakes, bundle, z, monkeypatch):
    from tdsm_edge.errors import DeviceError

    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 2})
    scorer = TrtBackend(m)
    engine = scorer.engine
    import weakref

    class Other:  # contexts elsewhere (another process's engine copy, a leaked context) holding both profiles
        pass

    others = [Other(), Other()]
    monkeypatch.setattr(f.trt.engines[0], "owner", {i: weakref.ref(o) for i, o in enumerate(others)})
    with pytest.raises(DeviceError, match="refused optimization profile 0"):
        scorer.errors(z[:2])
    assert engine.contexts == 0 and f.rt.calls["cudaStreamDestroy"] == f.rt.calls["cudaStreamCreate"]


# ---------------------------------------------------------------- classes against the plan's profile
def test_more_classes_than_the_plan_profile_is_a_clear_error(fakes, bundle, z):
    fakes()
    m = bundle({"graph": "scorer"})  # classes 1..5, the bundle's
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    names = scorer.class_set.names
    rows = {n: t[:1] for n, t in scorer.class_set.snapshot().tables.items()}
    scorer.class_set.add(["wave twice"], rows)  # the sixth class, with class 0's rows
    with pytest.raises(ConfigError, match="6 classes are active but the TensorRT scorer plan .* at most 5") as e:
        scorer.errors(z)
    assert rebuild_command(m) in str(e.value) and "--backend tensorrt" in rebuild_command(m)
    scorer.class_set.select(["wave twice", names[1]])
    np.testing.assert_allclose(scorer.errors(z), full[:, [0, 1]], rtol=RTOL, atol=ATOL)


def test_fewer_classes_than_the_profile_min_are_padded(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer", "classes": (3, 5, 5)})
    scorer = TrtBackend(m)
    full = OrtBackend(m, "cpu", 1).errors(z)
    names = scorer.class_set.names
    scorer.class_set.select([names[4], names[2]])
    got = scorer.errors(z)
    assert got.shape == (len(z), 2)
    np.testing.assert_allclose(got, full[:, [4, 2]], rtol=RTOL, atol=ATOL)
    assert set(executed(f, "scorer", "ada_x")) == {3}  # padded up to the min, the extra columns dropped


# ---------------------------------------------------------------- plan choice and compatibility
def test_the_plan_built_for_this_machine_is_chosen(fakes, bundle):
    fakes()
    m = bundle(
        {"graph": "scorer", "gpu_name": "Orin (nvgpu)"},
        {"graph": "scorer", "tensorrt_version": "10.12.0"},
        {"graph": "scorer"},
    )
    assert TrtBackend(m).record["file"] == m.plans[2]["file"]


def test_incompatible_or_missing_plans_name_the_rebuild_command(fakes, bundle):
    fakes()
    orin = bundle({"graph": "scorer", "gpu_name": "Orin (nvgpu)"}, name="orin")
    with pytest.raises(EngineIncompatibleError, match="GPU: the plan was built with Orin") as e:
        TrtBackend(orin)
    assert rebuild_command(orin) in str(e.value)
    two = bundle(
        {"graph": "scorer", "gpu_name": "Orin"}, {"graph": "scorer", "tensorrt_version": "10.12.0"}, name="two"
    )
    with pytest.raises(EngineIncompatibleError, match="none of the bundle's 2 TensorRT plans") as e:
        TrtBackend(two)
    assert "GPU:" in str(e.value) and "TensorRT version:" in str(e.value) and rebuild_command(two) in str(e.value)
    encoder_only = bundle({"graph": "encoder"}, name="encoder_only")
    with pytest.raises(ConfigError, match="no TensorRT plan for its scorer graph"):
        TrtBackend(encoder_only)
    wrong_graph = bundle({"graph": "scorer", "onnx": "encoder"}, name="wrong")
    with pytest.raises(BundleError, match="does not fit the manifest's IO spec"):
        TrtBackend(wrong_graph)


def test_another_tensorrt_version_is_refused(fakes, bundle):
    fakes(version="10.4.0")
    with pytest.raises(
        EngineIncompatibleError, match="TensorRT version: the plan was built with 10.3.0, this machine has 10.4.0"
    ):
        TrtBackend(bundle({"graph": "scorer"}))


@pytest.mark.parametrize("devices", [0, "no-driver", "no-driver-13"])
def test_no_cuda_gpu_is_a_config_error_and_auto_moves_on(fakes, bundle, devices):
    fakes(devices=devices)
    m = bundle()
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        TrtBackend(m)
    assert ZeroShotRecognizer.load(m.root, threads=1).backend == "onnxruntime"


def test_a_cuda_python_newer_than_the_driver_is_told_apart_from_no_gpu(fakes, bundle, caplog):
    """cuda-bindings 13 on a CUDA 12 driver returns cudaErrorInsufficientDriver (issue 15, finding 4): the
    error names the mismatch and the wheel to install; auto moves on, but says so at WARNING."""
    import logging

    from tdsm_edge.errors import DriverMismatchError

    fakes(devices="old-driver")
    m = bundle()
    with pytest.raises(DriverMismatchError, match=r"CUDA 12\.2.*not a missing GPU.*cuda-python==12\.\*"):
        TrtBackend(m)
    with caplog.at_level(logging.WARNING, logger="tdsm_edge"):
        assert ZeroShotRecognizer.load(m.root, threads=1).backend == "onnxruntime"
    assert any(r.levelno == logging.WARNING and "not a missing GPU" in r.getMessage() for r in caplog.records)


def test_a_skipped_gpu_backend_is_a_warning_when_a_gpu_was_asked_for(fakes, bundle, caplog):
    import logging

    fakes(devices=0)
    m = bundle()
    with caplog.at_level(logging.INFO, logger="tdsm_edge"):
        assert ZeroShotRecognizer.load(m.root, threads=1).backend == "onnxruntime"  # no GPU asked: routine
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot run here" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tdsm_edge"):
        ZeroShotRecognizer.load(m.root, threads=1, providers="cuda")
    assert any(r.levelno == logging.WARNING and "tensorrt cannot run here" in r.getMessage() for r in caplog.records)


def test_real_cuda_python_without_a_gpu_lets_auto_move_on(bundle, monkeypatch):
    if cuda_memory._cudart() is None:
        pytest.skip("cuda-python is not installed")
    if cuda_memory.cuda_device_count() > 0:
        pytest.skip("a CUDA GPU is visible")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(fake_cudart()))  # the GPU check is cuda-python's
    m = bundle()
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        TrtBackend(m)
    assert ZeroShotRecognizer.load(m.root, threads=1).backend == "onnxruntime"


@pytest.mark.parametrize("path", PATHS)
def test_both_cuda_python_import_paths(fakes, bundle, z, path):
    f = fakes(path=path)
    assert cuda_memory._cudart() is f.rt
    m = bundle({"graph": "scorer"})
    np.testing.assert_allclose(TrtBackend(m).errors(z), OrtBackend(m, "cpu", 1).errors(z), rtol=RTOL, atol=ATOL)
    assert f.rt.calls["cudaStreamCreate"] == 1


# ---------------------------------------------------------------- CUDA graphs
def test_cuda_graph_is_captured_per_shape_and_never_replayed_after_a_shape_change(fakes, bundle, z):
    """TensorRT: a graph is valid only for the shapes it was captured with; after a shape change it must be
    re-captured (issue 15, finding 2). The fake refuses replaying work after its context's shapes changed,
    even when they were set back."""
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m, cuda_graph=True)
    assert scorer.device.endswith(", CUDA graphs")
    full = OrtBackend(m, "cpu", 1).errors(z)
    c, execute = f.rt.calls, lambda: f.trt.calls["execute_async_v3"]
    np.testing.assert_allclose(scorer.errors(z[:3]), full[:3], rtol=RTOL, atol=ATOL)
    captured = (c["cudaStreamBeginCapture"], c["cudaGraphInstantiate"], c["cudaGraphLaunch"], execute())
    assert captured == (1, 1, 1, 2)  # one warm-up enqueue, one captured enqueue, one launch
    assert ("capture_mode", f.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal) in f.rt.log
    for _ in range(2):  # replays: no enqueue, no capture
        np.testing.assert_allclose(scorer.errors(z[:3]), full[:3], rtol=RTOL, atol=ATOL)
    assert (c["cudaStreamBeginCapture"], c["cudaGraphLaunch"], execute()) == (1, 3, 2)
    np.testing.assert_allclose(scorer.errors(z[:2]), full[:2], rtol=RTOL, atol=ATOL)  # a new shape: re-captured
    np.testing.assert_allclose(scorer.errors(z[:3]), full[:3], rtol=RTOL, atol=ATOL)  # back: re-captured again
    assert (c["cudaStreamBeginCapture"], c["cudaGraphLaunch"], c["cudaGraphExecDestroy"]) == (3, 5, 2)
    names = scorer.class_set.names
    scorer.class_set.select(names[::-1])  # same K: the graph reads the new tables from the same buffers
    np.testing.assert_allclose(scorer.errors(z[:3]), full[:3, ::-1], rtol=RTOL, atol=ATOL)
    assert c["cudaStreamBeginCapture"] == 3
    scorer.class_set.select(names[:2])  # another K: another shape
    np.testing.assert_allclose(scorer.errors(z[:3]), full[:3, :2], rtol=RTOL, atol=ATOL)
    assert c["cudaStreamBeginCapture"] == 4 and scorer.engine.captures == 4
    scorer.close()
    assert c["cudaGraphExecDestroy"] == 4 and f.rt.buffers == {}


def test_a_batch_above_the_profile_max_replays_one_graph_for_every_chunk(fakes, bundle, z):
    """10 rows on a 1..4 profile: chunks 4, 4, 2 would alternate two shapes (a re-capture per chunk); in graph
    mode the last chunk is zero-padded to 4, so one graph serves the whole call and every later one."""
    f = fakes()
    m = bundle({"graph": "scorer"})
    scorer = TrtBackend(m, cuda_graph=True)
    full = OrtBackend(m, "cpu", 1).errors(z)
    for _ in range(3):
        np.testing.assert_allclose(scorer.errors(z), full, rtol=RTOL, atol=ATOL)
    assert f.rt.calls["cudaStreamBeginCapture"] == 1 and f.rt.calls["cudaGraphLaunch"] == 9
    assert set(executed(f, "scorer", "z")) == {4}
    np.testing.assert_allclose(scorer.errors(z[:1]), full[:1], rtol=RTOL, atol=ATOL)  # below the max: as is
    assert executed(f, "scorer", "z")[-1] == 1


def test_cuda_graphs_with_several_contexts(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer", "profiles": 3})
    scorer = TrtBackend(m, cuda_graph=True)
    full = OrtBackend(m, "cpu", 1).errors(z)
    for r in _hammer(scorer, z[:3], threads=4, calls=4):
        np.testing.assert_allclose(r, full[:3], rtol=RTOL, atol=ATOL)
    contexts = scorer.engine.contexts
    assert f.rt.calls["cudaStreamBeginCapture"] == contexts == scorer.engine.captures  # one graph per context
    scorer.close()
    assert f.rt.calls["cudaGraphExecDestroy"] == contexts and f.rt.buffers == {}


def test_without_cuda_graph_nothing_is_captured(fakes, bundle, z):
    f = fakes()
    m = bundle({"graph": "scorer"})
    for _ in range(2):
        TrtBackend(m).errors(z[:3])
    assert f.rt.calls["cudaStreamBeginCapture"] == 0 and f.trt.calls["execute_async_v3"] == 2
    with pytest.raises(ConfigError, match="cuda_graph=True needs memory='cuda-python'"):
        TrtBackend(m, cuda_graph=True, memory="torch")


# ---------------------------------------------------------------- imports
def test_runtime_trt_modules_import_without_tensorrt_cuda_python_or_torch():
    code = (
        "import sys; sys.modules.update({'tensorrt': None, 'cuda': None, 'torch': None}); "
        "import tdsm_edge.runtime.trt_backend, tdsm_edge.runtime.trt_engine, tdsm_edge.runtime.cuda_memory as c; "
        "assert c._cudart() is None; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'cuda', 'tensorrt', 'onnx') "
        "and sys.modules[m] is not None], 'heavy import'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------- real TensorRT (skipped without it)
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_tensorrt_plan_equals_onnxruntime(runtime_bundle, tmp_path, z):
    pytest.importorskip("tensorrt")
    from export.tensorrt_build import build_plan

    dst = tmp_path / "real"
    shutil.copytree(runtime_bundle.dir, dst)
    data = json.loads((dst / MANIFEST).read_text())
    b, k = data["io"]["axes"][BATCH], data["io"]["axes"][CLASSES]
    record = build_plan(
        dst / data["graphs"]["scorer"]["file"],
        dst,
        graph="scorer",
        precision=data["precision"],
        min_batch=b["min"],
        opt_batch=b["opt"],
        max_batch=b["max"],
        classes=(k["min"], k["opt"], k["max"]),
        workspace_gb=0.25,
    )
    data["plans"].append(record)
    data["files"][record["file"]] = record["sha256"]
    seal_manifest(dst, data)
    m = load_manifest(dst)
    want = OrtBackend(m, "cpu", 1).errors(z)
    for graph in (False, True):
        scorer = TrtBackend(m, cuda_graph=graph)
        for _ in range(2):
            np.testing.assert_allclose(scorer.errors(z), want, rtol=1e-3, atol=1e-4)
        scorer.close()


def test_a_device_address_tensorrt_refuses_is_an_error_not_ignored(fakes, bundle, z, monkeypatch):
    """set_tensor_address returns False for an address TensorRT cannot use (issue 15, finding 7); the
    fake refuses a misaligned one as TensorRT does, and the backend says so instead of running on."""
    from tdsm_edge.errors import DeviceError

    f = fakes()
    m = bundle()
    malloc = f.rt.cudaMalloc
    free = f.rt.cudaFree
    monkeypatch.setattr(f.rt, "cudaMalloc", lambda n: (lambda r: (r[0], r[1] + 16))(malloc(int(n) + 16)))
    monkeypatch.setattr(f.rt, "cudaFree", lambda p: free(int(p) - 16))  # the refused buffer is freed
    backend = TrtBackend(m)
    for _ in range(2):  # a retry is refused again, never run on a buffer the context does not hold
        with pytest.raises(DeviceError, match="refused the device address"):
            backend.errors(z[:2])
