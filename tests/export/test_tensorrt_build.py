"""TensorRT builder and runner: everything that runs without TensorRT is tested for real here.

Without TensorRT: plan names, profiles, the compatibility check, the missing-dependency error, and
`build_plan` / `TrtEngine` driven through a small fake `tensorrt` module (this checks our calls and
bookkeeping, not TensorRT). With a CUDA GPU (`gpu` marker): the GPU query and both device-memory
helpers. With TensorRT (`tensorrt` marker, skipped here): a real build + run against onnxruntime.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from export import tensorrt_build as tb
from export.tensorrt_build import TrtEngine, build_plan, plan_name, profile_shapes
from tdsm_edge.errors import (
    BundleError,
    ConfigError,
    EngineIncompatibleError,
    ExportError,
    InputError,
    MissingDependencyError,
)
from tdsm_edge.runtime import (
    cuda_memory,  # noqa: E402
    trt_engine,
)
from tdsm_edge.runtime.cuda_memory import _ok, cuda_device_count
from tdsm_edge.runtime.manifest import check_plan_compat
from tdsm_edge.runtime.trt_engine import tensorrt_available

REBUILD = "python -m export.build_engine --run runs/demo --out engines/demo --backend tensorrt"
RECORD = dict(
    file="scorer_fp16.trt10.3.0.plan", tensorrt_version="10.3.0", gpu_name="Orin (nvgpu)", compute_capability="8.7"
)


# ---------------------------------------------------------------- no TensorRT needed
def test_module_imports_without_tensorrt_or_torch():
    code = (
        "import sys; sys.modules['tensorrt'] = None; import export.tensorrt_build, export.triton; "
        "from tdsm_edge.runtime.trt_engine import tensorrt_available; assert not tensorrt_available(); assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_plan_name_carries_graph_precision_and_tensorrt_version():
    assert plan_name("scorer", "fp16", "10.3.0") == "scorer_fp16.trt10.3.0.plan"
    assert plan_name("encoder", "fp32", "10.12.0.36") == "encoder_fp32.trt10.12.0.36.plan"
    for args in [("scorer", "int8", "10.3.0"), ("../x", "fp16", "10.3.0"), ("scorer", "fp16", "ten")]:
        with pytest.raises(ConfigError):
            plan_name(*args)


def test_compatible_plan_passes():
    check_plan_compat(RECORD, "10.3.0", "Orin (nvgpu)", "8.7", REBUILD)
    check_plan_compat(RECORD, "10.3.0", " orin  (NVGPU) ", (8, 7), REBUILD)  # spacing / case / tuple cc
    check_plan_compat(RECORD, "10.3.0", "Orin (nvgpu)", "sm_87", REBUILD)


@pytest.mark.parametrize(
    "have,field",
    [
        (("10.4.0", "Orin (nvgpu)", "8.7"), "TensorRT version"),
        (("10.3.0", "NVIDIA H100 80GB HBM3", "8.7"), "GPU"),
        (("10.3.0", "Orin (nvgpu)", "9.0"), "compute capability"),
    ],
)
def test_mismatch_raises_naming_the_field_and_the_rebuild_command(have, field):
    with pytest.raises(EngineIncompatibleError) as e:
        check_plan_compat(RECORD, *have, REBUILD)
    msg = str(e.value)
    assert f"{field}:" in msg and REBUILD in msg and RECORD["file"] in msg
    assert msg.count("\n  - ") == 1  # only the field that differs


def test_every_mismatch_is_listed_and_missing_fields_count_as_mismatches():
    with pytest.raises(EngineIncompatibleError) as e:
        check_plan_compat(RECORD, "10.12.0", "NVIDIA H100 80GB HBM3", "9.0", REBUILD)
    assert str(e.value).count("\n  - ") == 3
    with pytest.raises(EngineIncompatibleError, match="not recorded"):
        check_plan_compat({"file": "old.plan"}, "10.3.0", "Orin (nvgpu)", "8.7", REBUILD)


def test_gpu_model_mismatch_can_be_only_a_warning(caplog):
    check_plan_compat(RECORD, "10.3.0", "Jetson AGX Orin", "8.7", REBUILD, strict_gpu=False)
    assert "tuned for the other GPU" in caplog.text
    with pytest.raises(EngineIncompatibleError):  # a compute capability mismatch never is
        check_plan_compat(RECORD, "10.3.0", "Jetson AGX Orin", "9.0", REBUILD, strict_gpu=False)


def test_build_plan_without_tensorrt_names_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt → ImportError
    assert not tensorrt_available()
    with pytest.raises(MissingDependencyError, match="JetPack 6") as e:
        build_plan(tmp_path / "scorer_fp16.onnx", tmp_path)
    assert "pip install tensorrt" in str(e.value)
    with pytest.raises(MissingDependencyError):
        TrtEngine().load(_touch(tmp_path / "x.plan"))
    with pytest.raises(ConfigError):  # arguments are checked before TensorRT is needed
        build_plan(tmp_path / "s.onnx", tmp_path, min_batch=8, opt_batch=4, max_batch=64)


def test_profile_shapes_from_axis_names():
    inputs = {"z": ("batch", 16), "ada_x": ("classes", 2, 6, 32), "key_bias": ("classes", 7)}
    p = profile_shapes(inputs, batch=(1, 8, 64), classes=(1, 5, 60))
    assert p["z"] == {"min": [1, 16], "opt": [8, 16], "max": [64, 16]}
    assert p["ada_x"] == {"min": [1, 2, 6, 32], "opt": [5, 2, 6, 32], "max": [60, 2, 6, 32]}
    assert profile_shapes(inputs, classes=24)["key_bias"] == {"min": [24, 7], "opt": [24, 7], "max": [24, 7]}
    over = profile_shapes(inputs, overrides={"z": ((2, 16), (4, 16), (4, 16))})
    assert over["z"] == {"min": [2, 16], "opt": [4, 16], "max": [4, 16]} and over["ada_x"]["max"][0] == 64
    for bad in [
        dict(batch=(8, 4, 64)),
        dict(classes=(0, 1, 2)),
        dict(overrides={"zz": ((1,), (1,), (1,))}),
        dict(overrides={"z": ((1, 16), (2, 17), (4, 16))}),
    ]:  # static dim 16 changed
        with pytest.raises(ConfigError):
            profile_shapes(inputs, **bad)
    with pytest.raises(ConfigError, match="dynamic_inputs"):
        profile_shapes({"x": ("frames", 3)})


def test_network_flags_prefer_strong_typing():
    Flags = SimpleNamespace(STRONGLY_TYPED=_Enum.B)
    trt = SimpleNamespace(
        __version__="10.3.0", NetworkDefinitionCreationFlag=Flags, BuilderFlag=SimpleNamespace(FP16=1)
    )
    assert tb._network_flags(trt, "fp16") == (1 << 1, "strongly_typed")
    trt.NetworkDefinitionCreationFlag = SimpleNamespace()
    assert tb._network_flags(trt, "fp16") == (0, "fp16_flag_fallback")
    assert tb._network_flags(trt, "fp32") == (0, "fp32_weak_typing")
    trt.BuilderFlag = SimpleNamespace()  # TensorRT 11 without strong typing would be a contradiction: refuse
    with pytest.raises(ExportError):
        tb._network_flags(trt, "fp16")


# ---------------------------------------------------------------- a fake tensorrt: our calls, not TensorRT
class _Enum(enum.IntEnum):
    A = 0
    B = 1
    C = 2
    D = 3


def _fake_trt(calls: dict, strongly_typed=True, parse_ok=True, plan=b"PLAN-BYTES", engine=None, strict_norm=False):
    """The parts of the TensorRT 10 Python API that build_plan / TrtEngine touch, recording calls."""

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Cache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+new"

    class Config:
        builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):
            calls["pool"] = (pool, size)

        def set_flag(self, f):
            calls.setdefault("set_flag", []).append(f)

        def clear_flag(self, f):
            calls.setdefault("clear_flag", []).append(f)

        def add_optimization_profile(self, p):
            calls["profile"] = p.shapes
            self.profiles = [*getattr(self, "profiles", []), p.shapes]
            calls["profiles"] = self.profiles  # this build's
            return len(self.profiles) - 1  # TensorRT returns the new profile's index

        def create_timing_cache(self, blob):
            calls["cache_in"] = bytes(blob)
            self.cache = Cache(blob)
            return self.cache

        def set_timing_cache(self, cache, ignore_mismatch):
            calls["ignore_mismatch"] = ignore_mismatch
            return not (cache.blob == b"other-gpu" and not ignore_mismatch)  # TensorRT: False when refused

        def get_timing_cache(self):
            return None if calls.get("no_cache_out") else self.cache  # TensorRT may return None

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (list(lo), list(opt), list(hi))

    class Layer:
        def __init__(self, kind, dtype="float16"):
            self.type, self.precision, self.num_outputs, self.outputs = kind, None, 1, {}
            self.dtype = dtype  # what the parsed graph types its output

        def get_output(self, i):
            return SimpleNamespace(dtype=self.dtype)

        def set_output_type(self, i, t):
            self.outputs[i] = t

    class Network:
        def __init__(self, flags):
            calls["network_flags"], self.inputs, self.flags = flags, [], flags
            self.layers = [
                Layer("MATMUL"),
                Layer("NORM", "float32"),
                Layer("NORM", "float32"),
                Layer("SOFTMAX", "float32"),
            ]
            self.layers += [Layer("REDUCE", "float32"), Layer("ELEMENTWISE"), Layer("ELEMENTWISE", "float32")]
            self.layers += [Layer("UNARY", "float32"), Layer("SHUFFLE", "float32"), Layer("CONSTANT", "float32")]
            calls.setdefault("networks", []).append(self)

        num_inputs = property(lambda self: len(self.inputs))
        num_layers = property(lambda self: len(self.layers))

        def get_layer(self, i):
            return self.layers[i]

        def get_input(self, i):
            return SimpleNamespace(name=self.inputs[i])

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            self.net = Network(flags)
            return self.net

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, net, config):
            calls["opt_level"] = config.builder_optimization_level
            return plan

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0 if parse_ok else 2

        def parse_from_file(self, path):
            import onnx

            g = onnx.load(path).graph
            self.network.inputs = [v.name for v in g.input]
            if strict_norm and self.network.flags:  # onnx-tensorrt 10.1 on a strongly typed network
                self.num_errors, self.norm = 1, True
                return False
            return parse_ok

        def get_error(self, i):
            if getattr(self, "norm", False):
                return "In node 3 (LayerNormalization): setPrecision is not allowed in a strongly typed network"
            return f"In node {i}: UNSUPPORTED_NODE: fake op"

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            calls["deserialized"] = bytes(data)
            return engine

    flags = SimpleNamespace(STRONGLY_TYPED=_Enum.A) if strongly_typed else SimpleNamespace()
    return SimpleNamespace(
        __version__="10.3.0",
        ILogger=ILogger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        Runtime=Runtime,
        NetworkDefinitionCreationFlag=flags,
        BuilderFlag=SimpleNamespace(FP16=_Enum.B, TF32=_Enum.C, OBEY_PRECISION_CONSTRAINTS=_Enum.D),
        LayerType=SimpleNamespace(
            NORMALIZATION="NORM", SOFTMAX="SOFTMAX", REDUCE="REDUCE", ELEMENTWISE="ELEMENTWISE", UNARY="UNARY"
        ),
        float32="float32",
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        TensorIOMode=SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
        nptype=lambda t: t,
    )


def _tiny_onnx(path: Path, fp16: bool = True) -> Path:
    """z (batch, 4) float32 · W (4, 3) + per-class row → errors (batch, classes): a graph with both axes."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper

    ft = T.FLOAT16 if fp16 else T.FLOAT
    w = helper.make_tensor("W", ft, [4, 3], np.arange(12, dtype=np.float16 if fp16 else np.float32).tolist())
    nodes = [
        helper.make_node("Cast", ["z"], ["zc"], to=ft),
        helper.make_node("MatMul", ["zc", "W"], ["h"]),
        helper.make_node("MatMul", ["h", "bt"], ["e16"]),
        helper.make_node("Cast", ["e16"], ["errors"], to=T.FLOAT),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("z", T.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("bt", ft, [3, "classes"]),
        ],
        [helper.make_tensor_value_info("errors", T.FLOAT, ["batch", "classes"])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    return path


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def fake(monkeypatch):
    """Install a fake tensorrt; returns (calls, install(**kw))."""
    pytest.importorskip("onnx")
    calls: dict = {}

    def install(**kw):
        monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt(calls, **kw))
        monkeypatch.setattr(tb, "gpu_info", lambda: ("Orin (nvgpu)", "8.7"))  # the builder's
        monkeypatch.setattr(trt_engine, "gpu_info", lambda: ("Orin (nvgpu)", "8.7"))  # the runner's (load)
        return calls

    return calls, install


def test_build_plan_records_everything_and_writes_only_the_plan(tmp_path, fake):
    calls, install = fake
    install()
    onnx_path = _tiny_onnx(tmp_path / "scorer_fp16.onnx")
    cache = _touch(tmp_path / "timing.cache", b"old")
    rec = build_plan(
        onnx_path,
        tmp_path / "out",
        classes=(1, 5, 5),
        max_batch=16,
        workspace_gb=0.5,
        opt_level=4,
        timing_cache=cache,
        dynamic_inputs={"bt": ((3, 1), (3, 5), (3, 5))},
    )
    plan = tmp_path / "out" / "scorer_fp16.trt10.3.0.plan"
    assert plan.read_bytes() == b"PLAN-BYTES"  # TensorRT's bytes only: no metadata inside
    assert sorted(p.name for p in plan.parent.iterdir()) == [plan.name]  # no temp file left
    assert rec["file"] == plan.name and rec["sha256"] == hashlib.sha256(b"PLAN-BYTES").hexdigest()
    assert rec["precision_mode"] == "strongly_typed" and rec["tensorrt_version"] == "10.3.0"
    assert (rec["gpu_name"], rec["compute_capability"]) == ("Orin (nvgpu)", "8.7")
    assert rec["profile"]["z"] == {"min": [1, 4], "opt": [8, 4], "max": [16, 4]}
    assert rec["profile"]["bt"] == {"min": [3, 1], "opt": [3, 5], "max": [3, 5]}
    assert calls["profile"]["z"] == ([1, 4], [8, 4], [16, 4])
    assert calls["network_flags"] == 1 << int(_Enum.A) and "set_flag" not in calls  # no FP16 flag when strongly typed
    assert calls["clear_flag"] == [_Enum.C] and rec["tf32"] is False
    assert calls["pool"] == ("WORKSPACE", 1 << 29) and rec["workspace_bytes"] == 1 << 29
    assert calls["opt_level"] == 4 and calls["cache_in"] == b"old" and calls["ignore_mismatch"] is False
    assert cache.read_bytes() == b"old+new"
    assert rec["onnx"] == onnx_path.name and len(rec["onnx_sha256"]) == 64
    assert "profiles" not in rec and len(calls["profiles"]) == 1  # absent = 1: older runtimes load the record
    json.dumps(rec)  # manifest-ready


def test_build_plan_adds_one_identical_profile_per_concurrent_context(tmp_path, fake):
    """TensorRT: contexts in concurrent use need separate optimization profiles (issue 15, finding 1)."""
    calls, install = fake
    install()
    rec = build_plan(_tiny_onnx(tmp_path / "s.onnx"), tmp_path, classes=5, profiles=3)
    assert rec["profiles"] == 3 and len(calls["profiles"]) == 3
    assert all(p == calls["profiles"][0] for p in calls["profiles"])
    for bad in (0, 17, 2.0, True, "2"):
        with pytest.raises(ConfigError, match="execution contexts"):
            build_plan(_tiny_onnx(tmp_path / "t.onnx"), tmp_path, classes=5, profiles=bad)


def test_build_plan_fp16_flag_fallback_is_recorded(tmp_path, fake):
    calls, install = fake
    install(strongly_typed=False)
    rec = build_plan(_tiny_onnx(tmp_path / "s.onnx"), tmp_path, classes=5)
    assert rec["precision_mode"] == "fp16_flag_fallback" and calls["set_flag"] == [_Enum.B]
    assert calls["network_flags"] == 0


def test_build_plan_refuses_precision_the_graph_does_not_have(tmp_path, fake):
    _, install = fake
    install()
    with pytest.raises(ExportError, match="no float16 tensors"):
        build_plan(_tiny_onnx(tmp_path / "s32.onnx", fp16=False), tmp_path, precision="fp16")
    with pytest.raises(ExportError, match="float16"):
        build_plan(_tiny_onnx(tmp_path / "s16.onnx"), tmp_path, precision="fp32")


def test_parse_errors_are_listed(tmp_path, fake):
    _, install = fake
    install(parse_ok=False)
    with pytest.raises(ExportError, match="could not parse") as e:
        build_plan(_tiny_onnx(tmp_path / "s.onnx"), tmp_path)
    assert "In node 0: UNSUPPORTED_NODE" in str(e.value) and "In node 1" in str(e.value)
    assert not list(tmp_path.glob("*.plan"))


class _HostMemory:
    """Stands in for device memory: 'device' buffers are numpy byte arrays keyed by fake addresses."""

    stream = 7

    def __init__(self):
        self.bufs, self.next = {}, 4096

    def alloc(self, nbytes):
        self.next += 4096
        self.bufs[self.next] = np.zeros(max(nbytes, 1), np.uint8)
        return self.next

    def free(self, ptr):
        del self.bufs[ptr]

    def to_device(self, ptr, arr):
        self.bufs[ptr][: arr.nbytes] = arr.reshape(-1).view(np.uint8)

    def to_host(self, arr, ptr):
        arr.reshape(-1).view(np.uint8)[:] = self.bufs[ptr][: arr.nbytes]

    def sync(self):
        pass

    def close(self):
        pass


def _fake_engine(mem: _HostMemory):
    """An engine computing errors = z @ bt (float32), with a profile batch 1..4."""

    class Context:
        def __init__(self):
            self.shapes, self.addr = {}, {}

        def set_input_shape(self, name, shape):
            if name == "z" and not 1 <= shape[0] <= 4:
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.shapes[name] if name != "errors" else (self.shapes["z"][0], self.shapes["bt"][1])

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream):
            assert stream == mem.stream

            def read(n):
                return mem.bufs[self.addr[n]][: np.prod(self.shapes[n]) * 4].view(np.float32).reshape(self.shapes[n])

            out = read("z") @ read("bt")
            mem.bufs[self.addr["errors"]][: out.nbytes] = out.reshape(-1).view(np.uint8)
            return True

    names = ["z", "bt", "errors"]
    return SimpleNamespace(
        num_io_tensors=3,
        get_tensor_name=names.__getitem__,
        get_tensor_mode=lambda n: "OUT" if n == "errors" else "IN",
        get_tensor_dtype=lambda n: np.float32,
        get_tensor_profile_shape=lambda n, i: [(1, 4), (2, 4), (4, 4)],
        create_execution_context=Context,
    )


def test_engine_stages_with_a_fake_engine(tmp_path, fake, monkeypatch):
    calls, install = fake
    mem = _HostMemory()
    install(engine=_fake_engine(mem))
    plan = _touch(tmp_path / RECORD["file"], b"PLAN")
    record = {**RECORD, "sha256": hashlib.sha256(b"PLAN").hexdigest()}
    eng = TrtEngine(memory=mem)
    with pytest.raises(BundleError, match="load"):
        eng.activate()
    eng.load(plan, expected_record=record, rebuild_cmd=REBUILD).activate()
    assert calls["deserialized"] == b"PLAN" and eng.inputs == ["z", "bt"] and eng.outputs == ["errors"]
    rng = np.random.default_rng(0)
    z, bt = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    out = eng.allocate({"z": z.shape, "bt": bt.shape}).infer({"z": z, "bt": bt})
    np.testing.assert_allclose(out["errors"], z @ bt, rtol=1e-6)
    out = eng.infer({"z": z[:2], "bt": bt[:, :3]})  # new shapes: buffers re-allocated
    np.testing.assert_allclose(out["errors"], z[:2] @ bt[:, :3], rtol=1e-6)
    assert len(mem.bufs) == 3  # the old buffers were freed
    with pytest.raises(InputError, match="dtypes"):
        eng.infer({"z": z.astype(np.float16), "bt": bt})
    with pytest.raises(InputError, match="exactly the inputs"):
        eng.infer({"z": z})
    with pytest.raises(InputError, match="outside the plan's profile"):
        eng.allocate({"z": (9, 4), "bt": (4, 5)})
    eng.close()
    assert mem.bufs == {}


def test_load_refuses_a_changed_or_foreign_plan(tmp_path, fake):
    _, install = fake
    install(engine=object())
    plan = _touch(tmp_path / "p.plan", b"PLAN")
    with pytest.raises(BundleError, match="sha256"):
        TrtEngine().load(plan, expected_record={**RECORD, "sha256": "0" * 64}, rebuild_cmd=REBUILD)
    with pytest.raises(EngineIncompatibleError, match="TensorRT version") as e:
        TrtEngine().load(plan, expected_record={**RECORD, "tensorrt_version": "10.12.0"}, rebuild_cmd=REBUILD)
    assert REBUILD in str(e.value)
    with pytest.raises(BundleError, match="no TensorRT plan"):
        TrtEngine().load(tmp_path / "missing.plan")


# ---------------------------------------------------------------- a CUDA GPU (no TensorRT needed)
def _cuda_or_skip(kind: str):
    if kind == "torch" and cuda_memory._torch_cuda() is None:
        pytest.skip("torch with CUDA is not available")
    if kind == "cuda-python":
        if cuda_memory._cudart() is None or cuda_device_count() < 1:
            pytest.skip("cuda-python with a CUDA device is not available")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["cuda-python", "torch"])
def test_device_memory_round_trip(kind):
    _cuda_or_skip(kind)
    mem = cuda_memory.device_memory(kind)
    assert type(mem).__name__ == ("TorchMemory" if kind == "torch" else "CudaRuntimeMemory")
    assert isinstance(mem.stream, int)
    try:
        for a in (np.arange(12, dtype=np.float32).reshape(3, 4), np.linspace(-2, 2, 7).astype(np.float16)):
            ptr = mem.alloc(a.nbytes)
            back = np.zeros_like(a)
            mem.to_device(ptr, a)
            mem.to_host(back, ptr)
            mem.sync()
            np.testing.assert_array_equal(back, a)
            mem.free(ptr)
    finally:
        mem.close()


@pytest.mark.gpu
def test_cuda_graph_capture_and_replay_with_cuda_python():
    """What TrtEngine's CUDA-graph path asks of cuda-python (capture, instantiate, launch, destroy), on a real GPU."""
    _cuda_or_skip("cuda-python")
    mem = cuda_memory.device_memory("cuda-python")
    rt, n = mem.rt, 64
    ptr, out, zeros = mem.alloc(n), np.zeros(n, np.uint8), np.zeros(n, np.uint8)
    value = [7]
    try:
        mem.to_device(ptr, zeros)  # cudaMalloc does not clear
        mem.sync()
        exe = mem.capture(lambda: _ok(rt, rt.cudaMemsetAsync(ptr, value[0], n, mem._stream), "cudaMemsetAsync"))
        mem.to_host(out, ptr)
        mem.sync()
        assert not out.any()  # captured, not run
        value[0] = 9  # the graph holds the arguments it was captured with
        mem.launch(exe)
        mem.to_host(out, ptr)
        mem.sync()
        assert (out == 7).all()
        mem.destroy_graph(exe)
    finally:
        mem.free(ptr)
        mem.close()


@pytest.mark.gpu
def test_gpu_info_reads_name_and_compute_capability():
    if cuda_memory._cudart() is None and cuda_memory._torch_cuda() is None:
        pytest.skip("neither cuda-python nor torch with CUDA")
    _cuda_or_skip("cuda-python" if cuda_memory._cudart() is not None else "torch")
    name, cc = cuda_memory.gpu_info()
    assert name and "\x00" not in name
    major, minor = cc.split(".")
    assert int(major) >= 5 and minor.isdigit()


# ---------------------------------------------------------------- real TensorRT (skipped without it)
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_build_and_run_matches_numpy(tmp_path):
    pytest.importorskip("tensorrt")
    pytest.importorskip("onnx")
    onnx_path = _tiny_onnx(tmp_path / "tiny_fp16.onnx")
    eng = TrtEngine()
    rec = eng.build(
        onnx_path,
        tmp_path,
        graph="tiny",
        classes=(1, 5, 8),
        max_batch=8,
        workspace_gb=0.25,
        timing_cache=tmp_path / "timing.cache",
    )
    assert rec["precision_mode"] == "strongly_typed" and (tmp_path / "timing.cache").stat().st_size > 0
    eng.load(tmp_path / rec["file"], expected_record=rec, rebuild_cmd=REBUILD).activate()
    z = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    bt = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float16)
    out = eng.infer({"z": z, "bt": bt})["errors"]
    w = np.arange(12, dtype=np.float16).reshape(4, 3)
    ref = (z.astype(np.float16).astype(np.float32) @ w.astype(np.float32)) @ bt.astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=2e-2, atol=2e-2)
    eng.close()


def test_a_refused_timing_cache_is_an_error_and_a_missing_one_is_not_saved(tmp_path, fake, caplog):
    """TensorRT's set_timing_cache returns False for a cache of another version / GPU, and
    get_timing_cache may give None: neither may pass silently (issue 15, finding 7)."""
    calls, install = fake
    install()
    onnx_path = _tiny_onnx(tmp_path / "scorer_fp16.onnx")
    cache = _touch(tmp_path / "timing.cache", b"other-gpu")
    with pytest.raises(ExportError, match="refused the timing cache"):
        build_plan(onnx_path, tmp_path / "out", classes=(1, 5, 5), opt_batch=4, max_batch=4, timing_cache=cache)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing built
    cache.write_bytes(b"old")
    calls["no_cache_out"] = True
    with caplog.at_level(logging.WARNING):
        build_plan(onnx_path, tmp_path / "out", classes=(1, 5, 5), opt_batch=4, max_batch=4, timing_cache=cache)
    assert "returned no timing cache" in caplog.text and cache.read_bytes() == b"old"


def test_the_pinned_layers_cover_every_float32_island_of_the_fp16_export():
    onnx_export = pytest.importorskip("export.onnx_export")
    assert set(tb.ISLAND_LAYERS) == set(onnx_export.FP32_ISLAND_OPS)


def test_a_strongly_typed_parse_that_fails_on_layernorm_falls_back_and_says_so(tmp_path, fake, caplog):
    """onnx-tensorrt 10.1 rejects LayerNormalization in strongly typed networks (issue 15, finding 5):
    the build retries weakly typed, FP16 with the graph's float32 islands pinned to fp32 (normalization,
    softmax, reduce; elementwise / unary typed float32), logs why, and records the path it took; a fp32
    build or a second failure is still an error."""
    calls, install = fake
    install(strict_norm=True)
    with caplog.at_level(logging.WARNING):
        rec = build_plan(_tiny_onnx(tmp_path / "s.onnx"), tmp_path / "out", classes=5, opt_batch=4, max_batch=4)
    assert rec["precision_mode"] == tb.WEAK_FP16 == "fp16_weak_typed_islands_fp32"
    assert "LayerNormalization" in caplog.text and "fp16_weak_typed_islands_fp32" in caplog.text
    strong, weak = calls["networks"]
    assert strong.flags != 0 and weak.flags == 0  # tried strongly typed first
    assert calls["set_flag"] == [_Enum.B, _Enum.D]  # FP16 + OBEY_PRECISION_CONSTRAINTS
    pinned = [(layer.type, layer.dtype) for layer in weak.layers if layer.precision == "float32"]
    assert pinned == [
        ("NORM", "float32"),
        ("NORM", "float32"),
        ("SOFTMAX", "float32"),
        ("REDUCE", "float32"),
        ("ELEMENTWISE", "float32"),
        ("UNARY", "float32"),
    ]  # not the fp16 matmul / elementwise, nor float32 shuffles and constants (no compute to protect)
    assert all(layer.outputs == {0: "float32"} for layer in weak.layers if layer.precision == "float32")
    assert all(layer.outputs == {} for layer in weak.layers if layer.precision is None)
    calls.clear()
    install(strict_norm=True, parse_ok=False)
    with pytest.raises(ExportError, match="could not parse"):
        build_plan(_tiny_onnx(tmp_path / "t.onnx"), tmp_path / "out2", classes=5, opt_batch=4, max_batch=4)
