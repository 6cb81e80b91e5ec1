"""Denoiser training: exact resume, and a DDP step (gloo, 2 CPU processes) equal to a single-process step."""

import numpy as np
import pytest
import torch

from tdsm_edge.config import config_from_dict
from tdsm_edge.errors import ConfigError
from tdsm_edge.models.folders import load_denoiser
from tdsm_edge.training.denoiser_trainer import (
    ClassTextTensors,
    StepDraw,
    build_training,
    draw_step,
    train_denoiser,
    train_step,
)
from tdsm_edge.training.distributed import DistInfo, shard, wrap_ddp

K, L, DC, DZ = 6, 4, 12, 16
SEEN = np.array([0, 1, 2, 3])


def _cfg(attention="joint", **train):
    return config_from_dict(
        {
            "encoder": {"feature_dim": DZ},
            "text": {"num_tokens": L},
            "denoiser": {
                "preset": "tiny",
                "hidden_size": 32,
                "num_heads": 4,
                "depth": 2,
                "z_dim": DZ,
                "cond_dim": DC,
                "num_tokens": L,
                "attention": attention,
            },
            "train": {"iterations": 12, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 0, "lr": 1e-3, **train},
        }
    )


class _Text:
    def __init__(self, seed=0):
        g = np.random.default_rng(seed)
        self.global_ = g.normal(size=(K, DC)).astype(np.float32)
        self.local = g.normal(size=(K, L, DC)).astype(np.float32)
        self.mask = np.ones((K, L), bool)
        self.mask[:, -1] = False
        self.local[~self.mask] = 0


def _data(seed=0):
    g = np.random.default_rng(seed)
    y = np.repeat(SEEN, 10)
    z = (g.normal(size=(len(y), DZ)) + y[:, None]).astype(np.float32)
    return z, y


def test_draw_step_deterministic_and_in_range():
    a = draw_step(3, 1, 40, 8, DZ, 50, SEEN)
    b = draw_step(3, 1, 40, 8, DZ, 50, SEEN)
    assert torch.equal(a.idx, b.idx) and torch.equal(a.eps, b.eps) and torch.equal(a.neg, b.neg)
    assert a.t.min() >= 0 and a.t.max() < 50 and set(a.neg.tolist()) <= set(SEEN.tolist())
    c = draw_step(4, 1, 40, 8, DZ, 50, SEEN)
    assert not torch.equal(a.eps, c.eps)
    # one epoch of 5 steps visits every row exactly once (drop-last shuffling)
    rows = torch.cat([draw_step(s, 1, 40, 8, DZ, 50, SEEN).idx for s in range(5)])
    assert sorted(rows.tolist()) == list(range(40))


def test_resume_equals_uninterrupted(tmp_path):
    z, y = _data()
    full, _ = train_denoiser(z, y, _Text(), SEEN, _cfg(), tmp_path / "full", progress=False)
    cfg_half = _cfg(checkpoint_every=6)
    # an interrupted run: stop after the first checkpoint by training 6 steps with the SAME schedule
    import tdsm_edge.training.denoiser_trainer as dt

    class Stop(Exception):
        pass

    orig = dt.prune_checkpoints

    def stop_after_save(*a, **k):
        orig(*a, **k)
        raise Stop

    dt.prune_checkpoints = stop_after_save
    try:
        with pytest.raises(Stop):
            train_denoiser(z, y, _Text(), SEEN, cfg_half, tmp_path / "part", progress=False)
    finally:
        dt.prune_checkpoints = orig
    assert (tmp_path / "part" / "checkpoints" / "step_0000006").is_dir()
    resumed, hist = train_denoiser(z, y, _Text(), SEEN, cfg_half, tmp_path / "part", resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
    model, schedule, stats, cfg = load_denoiser(tmp_path / "part")
    torch.testing.assert_close(model.state_dict()["x_embedder.weight"], resumed.state_dict()["x_embedder.weight"])
    assert cfg.train.iterations == 12 and stats.mean.shape == (DZ,)


@pytest.mark.parametrize("attention", ["joint", "decoupled"])
def test_training_reduces_loss(tmp_path, attention):
    # features that the class text determines almost exactly: the denoiser can learn to use the text
    g = np.random.default_rng(1)
    y = np.repeat(SEEN, 16)
    centers = g.normal(size=(K, DZ)).astype(np.float32) * 2
    z = centers[y] + 0.1 * g.normal(size=(len(y), DZ)).astype(np.float32)
    cfg = _cfg(attention, iterations=150, lr=3e-3)
    model, hist = train_denoiser(z, y, _Text(), SEEN, cfg, tmp_path, progress=False)
    assert model.cfg.attention == attention
    first, last = np.mean(hist["loss"][:3]), np.mean(hist["loss"][-3:])
    assert last < 0.8 * first, (first, last)


def _one_step(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    info = DistInfo(rank, world, rank)
    cfg = _cfg()
    z, y = _data()
    model, schedule, opt, _ = build_training(cfg, "cpu")
    net = wrap_ddp(model, "cpu")
    d = draw_step(0, cfg.train.seed, len(z), cfg.train.batch_size, DZ, 50, SEEN)
    part = shard(cfg.train.batch_size, info)
    mine = StepDraw(d.idx[part], d.t[part], d.eps[part], d.neg[part])
    tables = ClassTextTensors.from_class_text(_Text())
    train_step(net, schedule, opt, torch.from_numpy(z)[mine.idx], torch.from_numpy(y)[mine.idx], mine, tables, cfg)
    if rank == 0:
        torch.save(
            {
                "params": model.state_dict(),
                "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None},
            },
            out,
        )
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_step_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "ddp.pt")
    mp.spawn(_one_step, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)
    ddp_state = saved["params"]

    cfg = _cfg()
    z, y = _data()
    model, schedule, opt, _ = build_training(cfg, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = draw_step(0, cfg.train.seed, len(z), cfg.train.batch_size, DZ, 50, SEEN)
    train_step(
        model,
        schedule,
        opt,
        torch.from_numpy(z)[d.idx],
        torch.from_numpy(y)[d.idx],
        d,
        ClassTextTensors.from_class_text(_Text()),
        cfg,
    )
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == saved["grads"].keys() and len(grads) > 0
    for n, g in grads.items():  # DDP averaged the shards' gradients into the full-batch gradient
        torch.testing.assert_close(saved["grads"][n], g, rtol=1e-4, atol=1e-7, msg=n)
    changed = 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, rtol=1e-5, atol=1e-6, msg=k)
        changed += int(not torch.equal(before[k], v))
    assert changed > 0, "the step changed no parameter"


def test_batch_must_divide_world():
    from tdsm_edge.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        shard(10, DistInfo(0, 3, 0))


def test_amp_needs_cuda(tmp_path):
    z, y = _data()
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        train_denoiser(z, y, _Text(), SEEN, _cfg(amp="bf16"), tmp_path, progress=False)
