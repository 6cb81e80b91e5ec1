"""The folded scorer: exactly the paper's per-noise, per-class loop, from per-class tables."""

from __future__ import annotations

import copy

import pytest
import torch

from tdsm_edge.config import ScheduleConfig
from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.class_tables import ClassTables, ClassTablesGraph, class_tables
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.runtime.table_schema import TABLE_SPEC, table_names
from tdsm_edge.scoring import noise_bank, score_reference

J = 3


def setup(tiny, stats, *, masked=True, prediction="epsilon", **overrides):
    model = tiny.model(**overrides)
    schedule = DDPMSchedule(ScheduleConfig(prediction=prediction))
    scorer = FoldedScorer(model, schedule, noise_bank(J, tiny.cfg.z_dim, 0), tiny.t, stats).eval()
    return model, schedule, scorer


def reference(model, schedule, stats, z, text, t):
    """The published loop on features standardised the way evaluation does (stats.apply)."""
    zs = torch.from_numpy(stats.apply(z.numpy()))
    return score_reference(model, schedule, zs, text, noise_bank(J, z.shape[1], 0), t)


CASES = [(masked, prediction, 2) for masked in (True, False) for prediction in ("epsilon", "v_prediction", "sample")]
CASES += [(masked, "epsilon", depth) for masked in (True, False) for depth in (1, 3)]  # depth 1: first = last block


@pytest.mark.parametrize("masked,prediction,depth", CASES)
def test_folded_equals_published_loop(tiny, stats, masked, prediction, depth):
    model, schedule, scorer = setup(tiny, stats, prediction=prediction, depth=depth)
    z, text = tiny.features(7), tiny.text(5, masked=masked)
    ref = reference(model, schedule, stats, z, text, tiny.t)  # (B, K)
    with torch.no_grad():
        got = scorer(z, **class_tables(model, *text, t=tiny.t))  # (B, K)
    assert got.shape == (7, 5) and got.dtype == torch.float32
    assert ref.std(dim=1).min() > 1e-3 * ref.abs().max()  # classes really differ, so argmin means something
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
    assert torch.equal(got.argmin(dim=1), ref.argmin(dim=1))


def test_mask_and_stats_matter(tiny, stats):
    """Guards against a scorer that ignores the mask bias or the standardisation and still passes."""
    model, _, scorer = setup(tiny, stats)
    z, (fc, fl, mask) = tiny.features(4), tiny.text(3)
    with torch.no_grad():
        masked = scorer(z, **class_tables(model, fc, fl, mask, tiny.t))
        unmasked = scorer(z, **class_tables(model, fc, fl, None, tiny.t))
        raw = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(J, 16, 0), tiny.t, None)(
            z, **class_tables(model, fc, fl, mask, tiny.t)
        )
    assert not torch.allclose(masked[:, :2], unmasked[:, :2], rtol=1e-3)  # classes 0, 1 have padding
    torch.testing.assert_close(masked[:, 2], unmasked[:, 2], rtol=1e-6, atol=0)  # class 2 has none
    assert not torch.allclose(masked, raw, rtol=1e-3)


def test_tables_names_shapes_and_dtypes(tiny):
    model = tiny.model()
    cfg, K = tiny.cfg, 4
    tables = class_tables(model, *tiny.text(K), t=tiny.t)
    D, L, depth = cfg.hidden_size, cfg.num_tokens, cfg.depth
    assert list(tables) == [n for n, s in TABLE_SPEC.items() if "joint" in s.attention] == list(table_names(depth))
    assert {n: tuple(v.shape) for n, v in tables.items()} == dict(
        text0=(K, L, D),
        text_qkv0=(K, L, 3 * D),
        key_bias=(K, 1 + L),
        ada_x=(K, depth, 6, D),
        ada_c=(K, depth, 6, D),
        ada_final=(K, 2, D),
    )
    assert all(v.dtype == torch.float32 for v in tables.values())
    # the tables are the denoiser's own quantities: adaLN of c, with 1 + scale in the scale rows
    c = model.condition(torch.full((K,), tiny.t), tiny.text(K)[0])  # (K, D)
    ada = model.blocks[1].adaLN_modulation(c).reshape(K, 6, D)
    ada[:, [1, 4]] += 1
    torch.testing.assert_close(tables["ada_x"][:, 1], ada, rtol=1e-6, atol=1e-6)
    assert tables["key_bias"][0, 4:].max() < -1e8 and tables["key_bias"][0, :4].abs().max() == 0
    assert "text0" not in class_tables(tiny.model(depth=1), *tiny.text(K), t=tiny.t)


def test_class_subset_needs_no_rebuild(tiny, stats):
    """Tables for K classes sliced to a subset score like tables built for that subset."""
    model, _, scorer = setup(tiny, stats)
    fc, fl, mask = tiny.text(6)
    z, idx = tiny.features(5), [4, 0, 3]
    full = ClassTables.from_dict(class_tables(model, fc, fl, mask, tiny.t))
    own = class_tables(model, fc[idx], fl[idx], mask[idx], tiny.t)
    with torch.no_grad():
        all_scores = scorer(z, **full.as_dict())  # (B, 6)
        sliced = scorer(z, **full.select(idx).as_dict())  # (B, 3)
        rebuilt = scorer(z, **own)  # (B, 3)
    assert sliced.shape == (5, 3)
    torch.testing.assert_close(sliced, rebuilt, rtol=1e-6, atol=0)
    torch.testing.assert_close(sliced, all_scores[:, idx], rtol=1e-6, atol=0)


def test_fp16_scorer_agrees_on_top1(tiny, stats):
    """Real fp16 arithmetic (torch CPU half) with the float32 islands: top-1 as fp32 on 200 samples."""
    model, _, scorer = setup(tiny, stats)
    half = copy.deepcopy(scorer).to_precision_("fp16")
    tables = ClassTables.from_dict(class_tables(model, *tiny.text(6, seed=3), t=tiny.t))
    z = tiny.features(200, seed=4)
    with torch.no_grad():
        e32, e16 = scorer(z, **tables.as_dict()), half(z, **tables.cast("fp16").as_dict())
    assert e16.dtype == torch.float32
    assert next(half.net.parameters()).dtype == torch.float16 and half.noises.dtype == torch.float32
    assert (e16.argmin(1) == e32.argmin(1)).float().mean() >= 0.99
    torch.testing.assert_close(e16, e32, rtol=5e-3, atol=0)
    assert not torch.equal(e16, e32)  # it really ran in fp16


def test_inputs_are_validated(tiny, stats):
    model, _, scorer = setup(tiny, stats)
    tables = class_tables(model, *tiny.text(3), t=tiny.t)
    z = tiny.features(2)
    with pytest.raises(InputError, match="needs the class tables"):
        scorer(z, **{k: v for k, v in tables.items() if k != "text0"})
    with pytest.raises(InputError, match="cast"):  # fp32 tables into a fp16 scorer: no silent promotion
        copy.deepcopy(scorer).to_precision_("fp16")(z, **tables)
    with pytest.raises(InputError, match="z must be"):
        scorer(z[:, :5], **tables)
    with pytest.raises(ConfigError):  # no pretend-fp32 from fp16 weights
        copy.deepcopy(scorer).to_precision_("fp16").to_precision_("fp32")
    with pytest.raises(ConfigError):
        ClassTablesGraph(model, tiny.t, "int8")
    with pytest.raises(InputError):
        class_tables(model, torch.zeros(3, 5), torch.zeros(3, 6, 5), None, tiny.t)


def test_the_table_schema_check_names_what_is_wrong(tiny):
    from tdsm_edge.runtime.table_schema import TableDims, check_tables

    tables = class_tables(tiny.model(), *tiny.text(4), t=tiny.t)
    dims = TableDims.of(tiny.cfg)
    assert check_tables(tables, dims, "test", "fp32") == 4
    assert check_tables({n: t.numpy() for n, t in tables.items()}, dims, "test", "fp32") == 4  # numpy too
    assert check_tables({n: t.bfloat16() for n, t in tables.items()}, dims, "test") == 4  # any float, no precision
    bad_k = dict(tables, text0=tables["text0"][:3])
    with pytest.raises(InputError, match=r"same K in all.*'text0': \(3,\)"):
        check_tables(bad_k, dims, "test", fix="recompute them")
    with pytest.raises(InputError, match="needs the class tables.*; recompute them"):
        check_tables({n: t for n, t in tables.items() if n != "ada_c"}, dims, "test", fix="recompute them")
    with pytest.raises(InputError, match="'text0' must be .* float32, got .* float16"):
        check_tables(ClassTables.from_dict(tables).cast("fp16").as_dict(), dims, "test", "fp32")
    with pytest.raises(InputError, match="'ada_x' must be"):
        check_tables(dict(tables, ada_x=tables["ada_x"].long()), dims, "test")


DECOUPLED_CASES = [(True, "epsilon", 2), (False, "epsilon", 2), (True, "v_prediction", 3), (True, "epsilon", 1)]


@pytest.mark.parametrize("masked,prediction,depth", DECOUPLED_CASES)
def test_decoupled_folded_equals_its_literal_loop(tiny, stats, masked, prediction, depth):
    """The decoupled variant: every block's text k|v folded per class, still the paper's loop on its model."""
    model, schedule, scorer = setup(tiny, stats, prediction=prediction, depth=depth, attention="decoupled")
    z, text = tiny.features(7), tiny.text(5, masked=masked)
    ref = reference(model, schedule, stats, z, text, tiny.t)  # (B, K): model.forward, J × K calls
    tables = class_tables(model, *text, t=tiny.t)
    assert list(tables) == ["text_kv", "key_bias", "ada_x", "ada_final"]
    D, L = tiny.cfg.hidden_size, tiny.cfg.num_tokens
    assert tuple(tables["text_kv"].shape) == (5, depth, L, 2 * D)
    blocks = scorer.net["blocks"]  # the text stream lives in the tables: no block keeps its weights
    assert all(b.qkv_c is None and b.proj_c is None and b.mlp_c is None for b in blocks)
    with torch.no_grad():
        got = scorer(z, **tables)  # (B, K)
    assert ref.std(dim=1).min() > 1e-3 * ref.abs().max()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
    assert torch.equal(got.argmin(dim=1), ref.argmin(dim=1))


def test_decoupled_is_another_model_with_the_same_weights(tiny, stats):
    """Same parameters (a TDSM checkpoint loads as is), different attention: the errors change."""
    joint, schedule, _ = setup(tiny, stats)
    decoupled, _, _ = setup(tiny, stats, attention="decoupled")
    decoupled.load_state_dict(joint.state_dict(), strict=True)
    for block in joint.blocks:  # adaLN-zero init would hide the text stream's effect: give it weights
        torch.nn.init.normal_(block.adaLN_modulation_c[1].weight, std=0.2)
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.2)
    torch.nn.init.normal_(joint.final_layer.linear.weight, std=0.2)
    decoupled.load_state_dict(joint.state_dict(), strict=True)
    z, text = tiny.features(4), tiny.text(3)
    a = reference(joint, schedule, stats, z, text, tiny.t)
    b = reference(decoupled, schedule, stats, z, text, tiny.t)
    assert not torch.allclose(a, b, rtol=1e-4)
    with pytest.raises(ConfigError, match="attention"):
        setup(tiny, stats, attention="sideways")
