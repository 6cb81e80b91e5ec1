"""ONNX export round trips: export, reload in onnxruntime (CPU), score, compare with torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export.onnx_export import IR_VERSION, check_fp16_islands, export_scorer, export_tables  # noqa: E402
from tdsm_edge.config import ScheduleConfig  # noqa: E402
from tdsm_edge.errors import ConfigError, ExportError  # noqa: E402
from tdsm_edge.models.class_tables import class_tables  # noqa: E402
from tdsm_edge.models.folded import FoldedScorer  # noqa: E402
from tdsm_edge.models.schedule import DDPMSchedule  # noqa: E402
from tdsm_edge.scoring import noise_bank  # noqa: E402

TABLES = ["text0", "text_qkv0", "key_bias", "ada_x", "ada_c", "ada_final"]


def session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_scorer(sess, z: torch.Tensor, tables: dict) -> np.ndarray:
    return sess.run(["errors"], {"z": z.numpy(), **{k: v.numpy() for k, v in tables.items()}})[0]


@pytest.fixture(scope="module")
def built(tiny, stats, tmp_path_factory):
    """One masked tiny model, its fp32 scorer, and the four exported graphs (exported once: ~25 s)."""
    out = tmp_path_factory.mktemp("onnx")
    model = tiny.model()
    scorer = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, tiny.cfg.z_dim, 0), tiny.t, stats).eval()
    rec = {p: export_scorer(scorer, out / f"scorer_{p}.onnx", p) for p in ("fp32", "fp16")}
    rec.update({f"tables_{p}": export_tables(model, out / f"tables_{p}.onnx", tiny.t, p) for p in ("fp32", "fp16")})
    return model, scorer, rec


def elem_types(path) -> tuple:
    """(ModelProto, {value name: numpy dtype name}) after ONNX shape inference."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = proto.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return proto, {k: str(onnx.helper.tensor_dtype_to_np_dtype(v)) for k, v in types.items() if v}


@pytest.mark.parametrize("B,K,masked", [(1, 2, True), (5, 7, False), (4, 1, True)])
def test_fp32_scorer_matches_torch_for_any_batch_and_class_count(built, tiny, B, K, masked):
    model, scorer, rec = built
    tables = class_tables(model, *tiny.text(K, masked=masked), t=tiny.t)
    z = tiny.features(B, seed=B)
    with torch.no_grad():
        ref = scorer(z, **tables).numpy()  # (B, K)
    got = run_scorer(session(rec["fp32"].path), z, tables)
    assert got.shape == (B, K) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=0)


def test_records_describe_the_graphs(built, tiny):
    _, _, rec = built
    cfg = tiny.cfg
    for p in ("fp32", "fp16"):
        r = rec[p]
        assert r.opset == 18 and r.graph == "scorer" and r.precision == p
        assert [s.name for s in r.inputs] == ["z", *TABLES] and [s.name for s in r.outputs] == ["errors"]
        spec = {s.name: s for s in [*r.inputs, *r.outputs]}
        assert spec["z"].shape == ("batch", cfg.z_dim) and spec["z"].dtype == "float32"
        assert spec["errors"].shape == ("batch", "classes") and spec["errors"].dtype == "float32"
        assert spec["ada_x"].shape == ("classes", cfg.depth, 6, cfg.hidden_size)
        assert spec["key_bias"].dtype == "float32"
        assert spec["ada_x"].dtype == ("float16" if p == "fp16" else "float32")
        proto = onnx.load(r.path)
        assert {o.domain: o.version for o in proto.opset_import}.get("", 18) == 18
        assert r.op_counts["Softmax"] == cfg.depth and r.op_counts["LayerNormalization"] > 0
    assert rec["fp32"].fp16_ops == {} and rec["fp16"].fp32_ops["Softmax"] == cfg.depth
    tables = rec["tables_fp32"]
    assert [s.name for s in tables.inputs] == ["fc", "fl", "mask"] and [s.name for s in tables.outputs] == TABLES


def test_graphs_are_written_at_an_ir_version_the_oldest_declared_onnxruntime_loads(built):
    """ONNX Runtime 1.17 (pyproject's floor) refuses IR 10, which the exporter writes (issue 15,
    finding 3): every graph is saved at IR 8 (opset 18's own), and still passes the full checker."""
    _, _, rec = built
    for r in rec.values():
        proto = onnx.load(r.path)
        assert proto.ir_version == IR_VERSION == 8, r.path
        onnx.checker.check_model(proto, full_check=True)
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"onnxruntime>=1.17"' in pyproject  # raise IR_VERSION only with this floor (1.18 loads IR 10)


def test_attention_is_written_in_the_fusable_pattern(built):
    """Mul(q, scale) → MatMul(·, kᵀ) → … Softmax … → MatMul(·, v): the scale precedes the first MatMul."""
    _, _, rec = built
    proto = onnx.load(rec["fp32"].path)
    producer = {o: n for n in proto.graph.node for o in n.output}
    first_matmuls = [
        n
        for n in proto.graph.node
        if n.op_type == "MatMul" and any(c.op_type == "Softmax" for c in proto.graph.node if _feeds(n, c, producer))
    ]
    assert len(first_matmuls) == 2  # one per block
    for mm in first_matmuls:
        assert producer[mm.input[0]].op_type == "Mul"


def _feeds(src, dst, producer, hops: int = 3) -> bool:
    """True when `src` reaches `dst` within `hops` nodes (through Add / Cast)."""
    frontier = [dst]
    for _ in range(hops):
        frontier = [producer[i] for n in frontier for i in n.input if i in producer]
        if any(n is src for n in frontier):
            return True
    return False


def test_fp16_graph_keeps_fp32_islands(built):
    _, _, rec = built
    proto, types = elem_types(rec["fp16"].path)
    nodes = proto.graph.node
    for op in ("LayerNormalization", "Softmax", "ReduceMean"):
        found = [n for n in nodes if n.op_type == op]
        assert found, op
        for n in found:
            assert types[n.input[0]] == "float32" and types[n.output[0]] == "float32", (op, n.name)
    matmuls = [n for n in nodes if n.op_type == "MatMul"]
    assert matmuls and all(types[n.output[0]] == "float16" for n in matmuls)
    matrices = [t for t in proto.graph.initializer if len(t.dims) == 2]  # the linears' weights (transposed)
    assert len(matrices) >= 10 and all(t.data_type == onnx.TensorProto.FLOAT16 for t in matrices)
    check_fp16_islands(proto)  # the exporter's own check agrees
    with pytest.raises(ExportError, match="must be float16"):
        check_fp16_islands(rec["fp32"].path)  # a fp32 graph is not a fp16 one
    _, ttypes = elem_types(rec["tables_fp16"].path)
    tproto = onnx.load(rec["tables_fp16"].path)
    assert all(ttypes[n.output[0]] == "float32" for n in tproto.graph.node if n.op_type == "LayerNormalization")


def test_tables_graph_matches_torch_and_feeds_the_scorer(built, tiny):
    model, scorer, rec = built
    sess = session(rec["tables_fp32"].path)
    for K in (2, 6):
        fc, fl, mask = tiny.text(K, seed=K)
        ref = class_tables(model, fc, fl, mask, tiny.t)
        got = dict(zip(TABLES, sess.run(TABLES, {"fc": fc.numpy(), "fl": fl.numpy(), "mask": mask.numpy()})))
        for name in TABLES:
            np.testing.assert_allclose(got[name], ref[name].numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
        z = tiny.features(3)
        with torch.no_grad():
            want = scorer(z, **ref).numpy()
        scores = run_scorer(session(rec["fp32"].path), z, {k: torch.from_numpy(v) for k, v in got.items()})
        np.testing.assert_allclose(scores, want, rtol=1e-4, atol=0)


def test_fp16_graphs_agree_with_fp32_on_top1(built, tiny):
    """fp16 tables graph → fp16 scorer graph, on ORT CPU, vs the fp32 torch scorer: 200 samples."""
    model, scorer, rec = built
    fc, fl, mask = tiny.text(6, seed=3)
    t16 = session(rec["tables_fp16"].path).run(TABLES, {"fc": fc.numpy(), "fl": fl.numpy(), "mask": mask.numpy()})
    t16 = dict(zip(TABLES, t16))
    assert t16["ada_x"].dtype == np.float16 and t16["key_bias"].dtype == np.float32
    z = tiny.features(200, seed=4)
    got = run_scorer(session(rec["fp16"].path), z, {k: torch.from_numpy(v) for k, v in t16.items()})
    with torch.no_grad():
        ref = scorer(z, **class_tables(model, fc, fl, mask, tiny.t)).numpy()
    assert got.dtype == np.float32
    assert (got.argmin(1) == ref.argmin(1)).mean() >= 0.99
    np.testing.assert_allclose(got, ref, rtol=1e-2, atol=0)
    assert not np.array_equal(got, ref)


def test_unmasked_depth1_tables_graph_has_only_what_is_read(tiny, tmp_path):
    model = tiny.model(depth=1, mask_text_padding=False)
    r = export_tables(model, tmp_path / "t.onnx", tiny.t, "fp32")
    assert [s.name for s in r.inputs] == ["fc", "fl"]  # no mask input when the model never masks
    assert [s.name for s in r.outputs] == TABLES[1:]  # no text0: nothing reads it after block 0
    qkv = {s.name: s for s in r.outputs}["text_qkv0"]
    assert qkv.shape == ("classes", tiny.cfg.num_tokens, 2 * tiny.cfg.hidden_size)  # k|v only


def test_export_arguments_are_validated(built, tmp_path):
    _, scorer, _ = built
    with pytest.raises(ConfigError, match="precision"):
        export_scorer(scorer, tmp_path / "x.onnx", "int8")
    with pytest.raises(ConfigError, match=">= 2"):
        export_scorer(scorer, tmp_path / "x.onnx", "fp32", example_batch=1)
    assert not (tmp_path / "x.onnx").exists()
    assert scorer.precision == "fp32"  # the fp16 export cast a copy


def test_decoupled_graphs_round_trip_fp32_and_fp16(tiny, stats, tmp_path):
    """The decoupled variant through the same export code: tables graph → scorer graph on ORT equals torch
    (fp32), fp16 keeps its islands and the top-1; the scorer reads every block's text k|v as a table."""
    model = tiny.model(attention="decoupled")
    for block in model.blocks:  # non-zero adaLN so every table matters
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
        torch.nn.init.normal_(block.adaLN_modulation_c[1].weight, std=0.1)
    torch.nn.init.normal_(model.final_layer.linear.weight, std=0.1)
    scorer = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, tiny.cfg.z_dim, 0), tiny.t, stats)
    names = ["text_kv", "key_bias", "ada_x", "ada_final"]
    rec = {p: export_scorer(scorer, tmp_path / f"scorer_{p}.onnx", p) for p in ("fp32", "fp16")}
    tab = {p: export_tables(model, tmp_path / f"tables_{p}.onnx", tiny.t, p) for p in ("fp32", "fp16")}
    assert [s.name for s in rec["fp32"].inputs] == ["z", *names]
    assert [s.name for s in tab["fp32"].outputs] == names
    check_fp16_islands(rec["fp16"].path)
    fc, fl, mask = tiny.text(5, seed=2)
    feeds = {"fc": fc.numpy(), "fl": fl.numpy(), "mask": mask.numpy()}
    ref_tables = class_tables(model, fc, fl, mask, tiny.t)
    got32 = dict(zip(names, session(tab["fp32"].path).run(names, feeds)))
    for n in names:
        np.testing.assert_allclose(got32[n], ref_tables[n].numpy(), rtol=1e-5, atol=1e-5, err_msg=n)
    z = tiny.features(64, seed=5)
    with torch.no_grad():
        want = scorer(z, **ref_tables).numpy()
    got = run_scorer(session(rec["fp32"].path), z, {k: torch.from_numpy(v) for k, v in got32.items()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=0)
    t16 = dict(zip(names, session(tab["fp16"].path).run(names, feeds)))
    assert t16["text_kv"].dtype == np.float16 and t16["key_bias"].dtype == np.float32
    got16 = run_scorer(session(rec["fp16"].path), z, {k: torch.from_numpy(v) for k, v in t16.items()})
    assert (got16.argmin(1) == want.argmin(1)).mean() >= 0.95


def test_a_graph_with_its_weights_in_a_side_file_lists_that_file(built, tiny, tmp_path):
    """onnx.load with external data clears the tensors' locations: the record must still list the side
    file (the manifest hashes it and the runtime opens such a graph from a path)."""
    _, scorer, _ = built
    rec = export_scorer(scorer, tmp_path / "s.onnx", "fp32", external_data=True)
    assert len(rec.files) == 2 and all(Path(f).is_file() for f in rec.files), rec.files
    assert onnx.load(str(tmp_path / "s.onnx"), load_external_data=False).ir_version == IR_VERSION
    session(tmp_path / "s.onnx")  # loads from the path with its side file
