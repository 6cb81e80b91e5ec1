"""FastScorer (torch kernels on CPU) against FoldedScorer: equal in fp32, within fp16 rounding in fp16."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdsm_edge.config import ScheduleConfig
from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.fastpath.scorer import FastScorer
from tdsm_edge.models.class_tables import ClassTables, class_tables
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.scoring import noise_bank

J = 3
REPO = Path(__file__).resolve().parents[2]


def folded(tiny, stats, prediction="epsilon", **overrides):
    model = tiny.model(**overrides)
    schedule = DDPMSchedule(ScheduleConfig(prediction=prediction))
    return model, FoldedScorer(model, schedule, noise_bank(J, tiny.cfg.z_dim, 0), tiny.t, stats).eval()


CASES = [(d, m, p) for d in (1, 2, 3) for m in (True, False) for p in ("epsilon",)]
CASES += [(2, True, "v_prediction"), (2, False, "sample")]


@pytest.mark.parametrize("depth,masked,prediction", CASES)
def test_fp32_layout_equals_folded(tiny, stats, depth, masked, prediction):
    """Same maths on the joint layout: equal to float rounding (catches any indexing or algebra slip)."""
    model, ref_scorer = folded(tiny, stats, prediction, depth=depth)
    tables = class_tables(model, *tiny.text(5, masked=masked), t=tiny.t)
    z = tiny.features(7)
    with torch.no_grad():
        ref = ref_scorer(z, **tables)
    got = FastScorer(ref_scorer, "fp32")(z, tables)
    assert got.shape == (7, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("depth,masked", [(1, True), (2, False), (3, True)])
def test_decoupled_fp32_equals_folded_and_fp16_agrees(tiny, stats, depth, masked):
    """The decoupled student on the fast path: the skeleton token alone against each class's cached
    text keys|values; fp32 equal to the folded scorer (itself pinned to the student's literal loop)."""
    model = tiny.model(attention="decoupled", depth=depth)
    for block in model.blocks:  # non-zero adaLN so every table matters
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
    schedule = DDPMSchedule(ScheduleConfig())
    ref_scorer = FoldedScorer(model, schedule, noise_bank(J, tiny.cfg.z_dim, 0), tiny.t, stats).eval()
    tables = class_tables(model, *tiny.text(5, masked=masked), t=tiny.t)
    assert "text_kv" in tables and "text_qkv0" not in tables
    z = tiny.features(200, seed=5)
    with torch.no_grad():
        ref = ref_scorer(z, **tables)
    fast = FastScorer(ref_scorer, "fp32")
    got = fast(z, tables)
    assert fast.prepare(tables).text_kv.shape == (5, depth, tiny.cfg.num_tokens, 2 * tiny.cfg.hidden_size)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
    half = FastScorer(ref_scorer, "fp16")(z, tables)
    torch.testing.assert_close(half, ref, rtol=3e-3, atol=0)
    assert (half.argmin(1) == ref.argmin(1)).float().mean() >= 0.995
    with pytest.raises(InputError, match="text_kv"):  # the joint tables are not the student's
        fast(z, class_tables(tiny.model(depth=depth), *tiny.text(5), t=tiny.t))


def test_fp16_agrees_with_fp32_reference(tiny, stats):
    """Real fp16 (CPU half GEMMs and SDPA) with float32 islands: close, and the same top-1 on 400 samples."""
    model, ref_scorer = folded(tiny, stats)
    tables = class_tables(model, *tiny.text(6, seed=3), t=tiny.t)
    z = tiny.features(400, seed=4)
    with torch.no_grad():
        ref = ref_scorer(z, **tables)
    fast = FastScorer(ref_scorer, "fp16")
    got = fast(z, tables)
    assert fast.blocks[0].qkv_w.dtype == torch.float16 and got.dtype == torch.float32
    assert (got.argmin(1) == ref.argmin(1)).float().mean() >= 0.995
    torch.testing.assert_close(got, ref, rtol=3e-3, atol=0)
    assert not torch.allclose(got, ref, rtol=1e-6, atol=0)  # it really ran in fp16
    # at least as close as FoldedScorer's own fp16 path (it rounds LayerNorm, modulate and residuals to fp16)
    half = copy.deepcopy(ref_scorer).to_precision_("fp16")
    with torch.no_grad():
        e16 = half(z, **ClassTables.from_dict(tables).cast("fp16").as_dict())
    assert ((got - ref).abs() / ref).mean() <= ((e16 - ref).abs() / ref).mean()


def test_fp16_tables_are_accepted_by_a_fp16_scorer(tiny, stats):
    model, ref_scorer = folded(tiny, stats)
    tables = ClassTables.from_dict(class_tables(model, *tiny.text(4), t=tiny.t))
    z = tiny.features(9)
    fast = FastScorer(ref_scorer, "fp16")
    torch.testing.assert_close(fast(z, tables.cast("fp16")), fast(z, tables), rtol=3e-3, atol=0)


def test_tables_are_converted_once_per_class_set(tiny, stats):
    model, ref_scorer = folded(tiny, stats)
    fc, fl, mask = tiny.text(6)
    tables = class_tables(model, fc, fl, mask, tiny.t)
    fast = FastScorer(ref_scorer, "fp32")
    z = tiny.features(5)
    first = fast.prepare(tables)
    assert fast.prepare(dict(tables)) is first  # same tensors, new dict: no conversion
    subset = ClassTables.from_dict(tables).select([4, 0, 3])
    sub = fast(z, subset)
    assert fast.prepare(subset) is not first
    torch.testing.assert_close(sub, fast(z, tables)[:, [4, 0, 3]], rtol=1e-6, atol=0)
    before = fast(z, tables)
    tables["ada_x"].mul_(1.5)  # edited in place: the cache must notice (version counter)
    assert fast.prepare(tables) is not first
    assert not torch.allclose(fast(z, tables), before, rtol=1e-3)


def test_mask_is_applied_and_dropped_when_nothing_is_padded(tiny, stats):
    model, ref_scorer = folded(tiny, stats)
    fc, fl, mask = tiny.text(3)
    fast = FastScorer(ref_scorer, "fp32")
    masked, unmasked = class_tables(model, fc, fl, mask, tiny.t), class_tables(model, fc, fl, None, tiny.t)
    assert fast.prepare(masked).has_mask and not fast.prepare(unmasked).has_mask
    z = tiny.features(4)
    a, b = fast(z, masked), fast(z, unmasked)
    assert not torch.allclose(a[:, :2], b[:, :2], rtol=1e-3)  # classes 0, 1 have padding
    torch.testing.assert_close(a[:, 2], b[:, 2], rtol=1e-6, atol=0)


def test_from_denoiser_and_cpu_has_no_graphs(tiny, stats):
    model = tiny.model()
    fast = FastScorer.from_denoiser(
        model, DDPMSchedule(ScheduleConfig()), noise_bank(J, 16, 0), tiny.t, stats, precision="fp32", cuda_graphs=True
    )
    assert fast.graphs is None  # capture is CUDA only
    _, ref_scorer = folded(tiny, stats)
    tables = class_tables(model, *tiny.text(3), t=tiny.t)
    z = tiny.features(3)
    with torch.no_grad():
        torch.testing.assert_close(fast(z, tables), ref_scorer(z, **tables), rtol=1e-5, atol=0)


def test_inputs_are_validated(tiny, stats):
    model, ref_scorer = folded(tiny, stats)
    tables = class_tables(model, *tiny.text(3), t=tiny.t)
    fast = FastScorer(ref_scorer, "fp32")
    with pytest.raises(InputError, match="float32"):  # fp16 tables would silently lose precision
        fast(tiny.features(2), ClassTables.from_dict(tables).cast("fp16"))
    with pytest.raises(InputError, match="z must be"):
        fast(torch.zeros(2, 5), tables)
    with pytest.raises(InputError, match="needs the class tables"):
        fast(tiny.features(2), {k: v for k, v in tables.items() if k != "text0"})
    with pytest.raises(InputError, match="ada_c"):
        fast(tiny.features(2), {**tables, "ada_c": tables["ada_c"][:, :1]})
    with pytest.raises(ConfigError, match="fp16"):
        FastScorer(copy.deepcopy(ref_scorer).to_precision_("fp16"), "fp32")
    with pytest.raises(ConfigError, match="backend"):
        FastScorer(ref_scorer, backend="cuda")


def test_importing_the_package_imports_neither_torch_nor_triton():
    code = (
        "import sys, tdsm_edge.fastpath as f; assert 'torch' not in sys.modules; "
        "import tdsm_edge.fastpath.scorer; assert 'triton' not in sys.modules, 'triton imported eagerly'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
