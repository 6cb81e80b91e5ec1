"""Triton model repository: layout, config.pbtxt against the served graph, and the served graph's numbers.

Tiny bundles are written with export.bundle (fp32 and fp16, one scorer export each, ~10 s); the
repository is checked by parsing config.pbtxt with Triton's own ModelConfig schema (tests/helpers/
triton_schema.py: tritonclient's generated protobuf), applying the server's load-time rules the writer
relies on, and comparing it with the ONNX graph in the repository; the served graph (tables baked in,
clients send only z) is run with onnxruntime against the bundle's scorer.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.triton import bake_tables, config_pbtxt, write_triton_model, write_triton_repo  # noqa: E402
from helpers.tiny_bundles import NAMES, K  # noqa: E402
from helpers.triton_schema import parse_config, require_schema, server_rules, type_name  # noqa: E402
from tdsm_edge.errors import BundleError, ConfigError, MissingDependencyError  # noqa: E402

TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- helpers
def graph_io(path):
    """(inputs, outputs) of an ONNX graph as {name: (elem type, dims)}, initializers excluded."""
    g = onnx.load(str(path)).graph
    weights = {t.name for t in g.initializer}

    def spec(v):
        return v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return {v.name: spec(v) for v in g.input if v.name not in weights}, {v.name: spec(v) for v in g.output}


def served_io(model_dir) -> dict:
    """{name: (TYPE_* name, dims)} of every input and output of the served ONNX graph."""
    inputs, outputs = graph_io(model_dir / "1" / "model.onnx")
    return {n: (TRITON_TYPES[elem], dims) for n, (elem, dims) in {**inputs, **outputs}.items()}


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

    cfg = parse_config((model_dir / "config.pbtxt").read_text())  # Triton's schema: unknown fields fail
    pb2 = require_schema()
    assert cfg.name == "tdsm_scorer" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 32
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, pb2.ModelInstanceGroup.KIND_GPU)]
    assert cfg.version_policy.WhichOneof("policy_choice") == "latest" and cfg.version_policy.latest.num_versions == 1

    inputs, outputs = graph_io(model_dir / "1" / "model.onnx")
    assert list(inputs) == ["z"]  # the clients' only input: the tables are constants now
    assert list(outputs) == ["errors", "scores"]
    assert [e.name for e in cfg.input] == list(inputs) and [e.name for e in cfg.output] == list(outputs)
    assert server_rules(cfg, model_dir, served_io(model_dir)) == []  # types, dims (batch axis implicit), labels
    entries = {e.name: e for e in cfg.output}
    assert list(entries["errors"].dims) == [K] and inputs["z"][1] == ["batch", tiny.cfg.z_dim]
    assert entries["errors"].label_filename == ""  # top-k of errors would be the worst classes
    assert entries["scores"].label_filename == "labels.txt"


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_configs_pass_tritons_schema_and_load_rules(bundle, bundle16, tmp_path, precision, backend):
    """Issue 15: every config this writer makes, fp32 and fp16, for both platforms, parsed by Triton's own
    ModelConfig schema and checked against the served graph as the server would at load time."""
    m, _ = bundle if precision == "fp32" else bundle16
    extra = {}
    if backend == "tensorrt":
        plan = tmp_path / "served.plan"
        plan.write_bytes(b"PLAN")  # the config does not depend on the plan's bytes
        extra = {"backend": "tensorrt", "plan_path": plan}
    model_dir = write_triton_repo(
        m.root, tmp_path / "repo", max_batch_size=16, preferred_batch_sizes=[4, 16], instance_count=2, **extra
    )
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.platform == ("tensorrt_plan" if backend == "tensorrt" else "onnxruntime_onnx")
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 16] and cfg.instance_group[0].count == 2
    # a plan repository holds no ONNX: compare with the served graph of the same bundle's ONNX repository
    io = served_io(write_triton_repo(m.root, tmp_path / "onnx_of") if backend == "tensorrt" else model_dir)
    assert server_rules(cfg, model_dir, io) == []
    assert type_name(cfg.input[0].data_type) == "TYPE_FP32"  # z stays float32 in the fp16 graph too


def test_the_schema_check_catches_what_triton_refuses(bundle, tmp_path):
    """The checks above can fail: Triton's parser refuses an unknown field; the load rules catch a preferred
    batch size above the max, a wrong type or dims, and a missing label file."""
    from google.protobuf.text_format import ParseError

    m, _ = bundle
    model_dir = write_triton_repo(m.root, tmp_path / "repo", max_batch_size=8)
    text = (model_dir / "config.pbtxt").read_text()
    io = served_io(model_dir)
    with pytest.raises(ParseError, match="no field named"):
        parse_config(text + "\nmax_batch: 8\n")
    cfg = parse_config(text)
    cfg.dynamic_batching.preferred_batch_size.extend([16])
    cfg.output[0].data_type = require_schema().TYPE_FP16
    cfg.input[0].dims[0] += 1
    (model_dir / "labels.txt").unlink()
    cfg.name = "someone_else"
    problems = " | ".join(server_rules(cfg, model_dir, io))
    for expected in (
        "preferred_batch_size 16 outside",
        "TYPE_FP16 in the config",
        "dims",
        "missing label file",
        "not its folder's name",
    ):
        assert expected in problems, problems


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
    cfg = parse_config((model_dir / "config.pbtxt").read_text())
    assert cfg.platform == "tensorrt_plan" and list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert [e.name for e in cfg.input] == ["z"]


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
    cfg = parse_config(text)
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, require_schema().ModelInstanceGroup.KIND_CPU)]
    assert cfg.output[1].label_filename == "labels.txt" and cfg.output[0].label_filename == ""


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
