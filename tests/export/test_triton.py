"""Triton model repository: layout, config.pbtxt against the served graph, and the served graph's numbers.

One tiny bundle is written with export.bundle (one scorer export, ~10 s); the repository is checked
by parsing config.pbtxt and comparing it with the ONNX graph in the repository, and the served graph
(tables baked in, clients send only z) is run with onnxruntime against the bundle's scorer.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.bundle import BundleRequest, write_bundle  # noqa: E402
from export.triton import bake_tables, config_pbtxt, write_triton_model, write_triton_repo  # noqa: E402
from tdsm_edge.config import ScheduleConfig  # noqa: E402
from tdsm_edge.errors import BundleError, ConfigError, MissingDependencyError  # noqa: E402
from tdsm_edge.models.schedule import DDPMSchedule  # noqa: E402
from tdsm_edge.runtime.manifest import load_manifest, load_tables  # noqa: E402
from tdsm_edge.text.prompts import ClassText  # noqa: E402

K = 5
NAMES = ("wave", "kick", "sit down", "jump", "clap")
TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


@pytest.fixture(scope="module")
def bundle(tiny, stats, tmp_path_factory):
    """A fp32 bundle of the tiny model with K=5 classes (manifest, scorer graph, tables.npz)."""
    fc, fl, mask = tiny.text(K)
    text = ClassText(fc.numpy(), (fl * mask[..., None]).numpy(), mask.numpy(), NAMES, "test", ("label",))
    out = tmp_path_factory.mktemp("bundle") / "demo"
    write_bundle(
        BundleRequest(
            out,
            tiny.model(),
            DDPMSchedule(ScheduleConfig()),
            stats,
            text,
            timestep=tiny.t,
            num_noises=3,
            precision="fp32",
            build_command="python -m export.build_engine --out demo",
        )
    )
    m = load_manifest(out)
    return m, load_tables(m)


def session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- a tiny protobuf-text reader for config.pbtxt
def parse_pbtxt(text: str) -> dict:
    """Protobuf text format subset: `name: scalar`, `name { ... }`, `name: { ... }`, `name [ a, b ]`.
    Every field maps to a list of values (fields may repeat); messages are dicts."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.sub(r"#[^\n]*", "", text))
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                pos += tokens[pos] == ","
            pos += 1
            return items
        if tok.startswith('"'):
            return tok[1:-1]
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(end):
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            name = tokens[pos]
            pos += 1 + (tokens[pos + 1] == ":")
            out.setdefault(name, []).append(value())
        pos += 1
        return out

    return message(None)


def graph_io(path):
    """(inputs, outputs) of an ONNX graph as {name: (elem type, dims)}, initializers excluded."""
    g = onnx.load(str(path)).graph
    weights = {t.name for t in g.initializer}

    def spec(v):
        return v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return {v.name: spec(v) for v in g.input if v.name not in weights}, {v.name: spec(v) for v in g.output}


# ---------------------------------------------------------------- tests
def test_repository_layout_and_config_match_the_served_graph(bundle, tmp_path, tiny):
    m, _ = bundle
    model_dir = write_triton_repo(m.root, tmp_path / "repo", max_batch_size=32, max_queue_delay_us=250)
    assert model_dir == tmp_path / "repo" / "tdsm_scorer"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "1",
        "1/model.onnx",
        "config.pbtxt",
        "labels.txt",
    ]
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["tdsm_scorer"]  # no staging folder left
    assert (model_dir / "labels.txt").read_text().splitlines() == list(NAMES)

    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert cfg["name"] == ["tdsm_scorer"] and cfg["platform"] == ["onnxruntime_onnx"]
    assert cfg["max_batch_size"] == [32]
    assert cfg["dynamic_batching"][0]["max_queue_delay_microseconds"] == [250]
    assert cfg["instance_group"][0][0] == {"count": [1], "kind": ["KIND_GPU"]}
    assert cfg["version_policy"] == [{"latest": [{"num_versions": [1]}]}]

    inputs, outputs = graph_io(model_dir / "1" / "model.onnx")
    assert list(inputs) == ["z"]  # the clients' only input: the tables are constants now
    assert list(outputs) == ["errors", "scores"]
    for section, graph in (("input", inputs), ("output", outputs)):
        entries = {e["name"][0]: e for e in cfg[section][0]}
        assert list(entries) == list(graph)
        for name, (elem, dims) in graph.items():
            assert dims[0] == "batch"  # max_batch_size > 0: Triton adds the batch axis itself
            assert entries[name]["data_type"] == [TRITON_TYPES[elem]]
            assert entries[name]["dims"] == [dims[1:]]
    entries = {e["name"][0]: e for e in cfg["output"][0]}
    assert entries["errors"]["dims"] == [[K]] and inputs["z"][1] == ["batch", tiny.cfg.z_dim]
    assert "label_filename" not in entries["errors"]  # top-k of errors would be the worst classes
    assert entries["scores"]["label_filename"] == ["labels.txt"]


@pytest.mark.parametrize("B", [1, 4])
def test_served_graph_equals_the_bundle_scorer(bundle, tmp_path, tiny, B):
    m, tables = bundle
    model_dir = write_triton_model(
        m.path("scorer"), tables, m.io.graphs["scorer"], tmp_path / "repo", class_names=list(NAMES), model_name="scorer"
    )
    z = tiny.features(B, seed=B).numpy()  # (B, Dz) raw features
    ref = session(m.path("scorer")).run(["errors"], {"z": z, **tables})[0]  # (B, K)
    errors, scores = session(model_dir / "1" / "model.onnx").run(["errors", "scores"], {"z": z})
    assert errors.shape == (B, K) and errors.dtype == np.float32
    np.testing.assert_allclose(errors, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(scores, -errors)
    assert scores.argmax(1).tolist() == ref.argmin(1).tolist()


def test_rewriting_replaces_the_model_folder(bundle, tmp_path):
    m, tables = bundle
    repo = tmp_path / "repo"
    write_triton_model(m.path("scorer"), tables, None, repo, class_names=list(NAMES))
    (repo / "tdsm_scorer" / "stale.txt").write_text("old")
    sub = {k: v[:2] for k, v in tables.items()}
    model_dir = write_triton_model(m.path("scorer"), sub, None, repo, class_names=list(NAMES[:2]))
    assert not (model_dir / "stale.txt").exists() and sorted(p.name for p in repo.iterdir()) == ["tdsm_scorer"]
    assert (model_dir / "labels.txt").read_text().splitlines() == list(NAMES[:2])
    assert graph_io(model_dir / "1" / "model.onnx")[1]["errors"][1] == ["batch", 2]


def _fp16_table_graph(path, table_dims):
    """z (batch, 3) float32 · tab^T, tab (classes, 3) float16 → errors (batch, classes) float32."""
    from onnx import TensorProto as T
    from onnx import helper

    g = helper.make_graph(
        [
            helper.make_node("Cast", ["z"], ["z16"], to=T.FLOAT16),
            helper.make_node("Transpose", ["tab"], ["tabT"]),
            helper.make_node("MatMul", ["z16", "tabT"], ["e16"]),
            helper.make_node("Cast", ["e16"], ["errors"], to=T.FLOAT),
        ],
        "t",
        [
            helper.make_tensor_value_info("z", T.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("tab", T.FLOAT16, table_dims),
        ],
        [helper.make_tensor_value_info("errors", T.FLOAT, ["batch", "classes"])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    return path


def test_tables_are_cast_to_the_graph_dtype_and_must_fit(tmp_path):
    """A fp16 table input takes float32 tables (the fp16 graph's contract), but not values fp16 cannot hold."""
    path = _fp16_table_graph(tmp_path / "t.onnx", ["classes", 3])
    tab = np.arange(6, dtype=np.float32).reshape(2, 3)  # (K=2, 3)
    proto, k = bake_tables(path, {"tab": tab})
    init = {t.name: t for t in proto.graph.initializer}["tab"]
    assert k == 2 and init.data_type == onnx.TensorProto.FLOAT16
    errors, scores = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["errors", "scores"], {"z": np.ones((4, 3), np.float32)}
    )
    np.testing.assert_array_equal(errors, np.tile(tab.sum(1), (4, 1)))
    np.testing.assert_array_equal(scores, -errors)
    with pytest.raises(BundleError, match="overflows"):
        bake_tables(path, {"tab": np.full((2, 3), 1e6, np.float32)})
    with pytest.raises(BundleError, match="shape"):
        bake_tables(path, {"tab": tab.T})
    with pytest.raises(BundleError, match="leading 'classes' axis"):
        bake_tables(_fp16_table_graph(tmp_path / "u.onnx", [2, 3]), {"tab": tab})


def test_invalid_requests_are_errors(bundle, tmp_path, monkeypatch):
    m, tables = bundle
    args = (m.path("scorer"), tables, None, tmp_path / "repo")
    with pytest.raises(ConfigError, match="backend"):
        write_triton_model(*args, class_names=list(NAMES), backend="tflite")
    with pytest.raises(ConfigError, match="plan_path"):
        write_triton_model(*args, class_names=list(NAMES), plan_path=tmp_path / "x.plan")
    with pytest.raises(ConfigError, match="max_batch_size"):
        write_triton_model(*args, class_names=list(NAMES), max_batch_size=0)
    with pytest.raises(BundleError, match="5 classes but 4"):
        write_triton_model(*args, class_names=list(NAMES[:4]))
    with pytest.raises(BundleError, match="not inputs"):
        write_triton_model(
            m.path("scorer"), {**tables, "bogus": tables["ada_x"]}, None, tmp_path / "r", class_names=list(NAMES)
        )
    bad_io = m.io.graphs["scorer"].to_dict()
    bad_io["inputs"][0]["dtype"] = "float16"
    with pytest.raises(BundleError, match="IO spec"):
        write_triton_model(m.path("scorer"), tables, bad_io, tmp_path / "repo", class_names=list(NAMES))
    monkeypatch.setattr("export.triton.tensorrt_available", lambda: False)
    with pytest.raises(MissingDependencyError, match="plan_path"):
        write_triton_model(*args, class_names=list(NAMES), backend="tensorrt")
    assert not (tmp_path / "repo" / "tdsm_scorer").exists()


def test_tensorrt_backend_with_a_given_plan(bundle, tmp_path):
    m, tables = bundle
    plan = tmp_path / "served.plan"
    plan.write_bytes(b"PLAN")
    model_dir = write_triton_model(
        m.path("scorer"),
        tables,
        m.io.graphs["scorer"],
        tmp_path / "repo",
        class_names=list(NAMES),
        backend="tensorrt",
        plan_path=plan,
        preferred_batch_sizes=[8, 16],
    )
    assert (model_dir / "1" / "model.plan").read_bytes() == b"PLAN" and not (model_dir / "1" / "model.onnx").exists()
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert cfg["platform"] == ["tensorrt_plan"] and cfg["dynamic_batching"][0]["preferred_batch_size"] == [[8, 16]]
    assert [e["name"][0] for e in cfg["input"][0]] == ["z"]


def test_config_text_is_stable():
    text = config_pbtxt(
        "m",
        "onnxruntime_onnx",
        8,
        [("z", "float32", (16,))],
        [("errors", "float32", (5,)), ("scores", "float32", (5,))],
        instance_kind="KIND_CPU",
        instance_count=2,
        header="hello",
    )
    assert text.startswith("# hello\nname: \"m\"\n")
    cfg = parse_pbtxt(text)
    assert cfg["instance_group"][0][0] == {"count": [2], "kind": ["KIND_CPU"]}
    assert cfg["output"][0][1]["label_filename"] == ["labels.txt"] and "label_filename" not in cfg["output"][0][0]


def test_a_foreign_model_folder_is_never_replaced(bundle, tmp_path):
    """Only a model folder this writer made (config.pbtxt with its header) is replaced; another one is refused."""
    m, tables = bundle
    repo = tmp_path / "repo"
    (repo / "tdsm_scorer" / "1").mkdir(parents=True)
    (repo / "tdsm_scorer" / "config.pbtxt").write_text('name: "someone_elses"\nplatform: "pytorch_libtorch"\n')
    (repo / "tdsm_scorer" / "1" / "model.pt").write_bytes(b"weights")
    with pytest.raises(BundleError, match="refusing to replace .*not a Triton model folder written by tdsm-edge"):
        write_triton_model(m.path("scorer"), tables, None, repo, class_names=list(NAMES))
    assert (repo / "tdsm_scorer" / "1" / "model.pt").read_bytes() == b"weights"
    (tmp_path / "file_repo").write_text("x")
    with pytest.raises(BundleError, match="is a file"):
        write_triton_model(m.path("scorer"), tables, None, tmp_path / "file_repo", class_names=list(NAMES))


@pytest.mark.parametrize(
    "max_batch, preferred, extra",
    [
        (8, [16, 32], {}),
        (8, [0, 4], {}),
        (4, [4], {"instance_count": 0}),
        (4, None, {"max_queue_delay_us": -1}),
        (8, "12", {}),
        (8, [2.5], {}),
        (4, None, {"instance_count": True}),
    ],
)
def test_batching_values_triton_refuses_are_refused_here(bundle, tmp_path, max_batch, preferred, extra):
    """Triton refuses to load a model whose preferred batch sizes exceed max_batch_size (issue 15,
    finding 6): refused before anything is written, in the writer and in config_pbtxt itself."""
    m, _ = bundle
    with pytest.raises(ConfigError, match="preferred batch sizes|instance_count|max_batch_size"):
        write_triton_repo(m.root, tmp_path / "repo", max_batch_size=max_batch, preferred_batch_sizes=preferred, **extra)
    assert not (tmp_path / "repo").exists()
    with pytest.raises(ConfigError):
        config_pbtxt("m", "onnxruntime_onnx", max_batch, [], [], preferred_batch_sizes=preferred, **extra)
    ok = config_pbtxt("m", "onnxruntime_onnx", 32, [], [], preferred_batch_sizes=[8, 32])
    assert "preferred_batch_size: [ 8, 32 ]" in ok
