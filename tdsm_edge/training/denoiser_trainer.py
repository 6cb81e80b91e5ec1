"""Train the TDSM denoiser with the triplet diffusion loss on seen-class features.

Every random draw of a step (batch indices, t, ε, negative classes) comes from a generator seeded by
(seed, step). So a resumed run equals an uninterrupted one, and under DDP every rank draws the same
global batch and keeps its own shard (see `distributed.py`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import (
    latest_checkpoint,
    load_into,
    load_module,
    load_train_state,
    prune_checkpoints,
    save_module,
    save_train_state,
)
from ..config import RunConfig, to_dict
from ..data.features import FeatureStats
from ..errors import CheckpointError, ConfigError, DataError
from .distributed import DistInfo, shard, wrap_ddp

log = logging.getLogger(__name__)


@dataclass
class ClassTextTensors:
    """Class text as torch tensors indexed by GLOBAL class index."""

    fc: object  # (K, Dc) float32: global text feature per class
    fl: object  # (K, L, Dc) float32: local token features per class
    mask: object  # (K, L) bool: real tokens (None: no mask, the published behaviour)

    @classmethod
    def from_class_text(cls, text, device: str = "cpu") -> ClassTextTensors:
        import torch

        return cls(
            torch.from_numpy(np.ascontiguousarray(text.global_, np.float32)).to(device),
            torch.from_numpy(np.ascontiguousarray(text.local, np.float32)).to(device),
            torch.from_numpy(np.ascontiguousarray(text.mask, bool)).to(device),
        )

    def rows(self, labels):
        """(fc (B, Dc), fl (B, L, Dc), mask (B, L)) for a batch of class indices."""
        return self.fc[labels], self.fl[labels], self.mask[labels]

    def indexed(self, labels):
        """(fc (K, Dc), fl (K, L, Dc), mask (K, L), labels (B,)): the tables plus the class per sample,
        so the denoiser embeds each class's text once per step instead of once per sample."""
        return self.fc, self.fl, self.mask, labels


@dataclass
class StepDraw:
    idx: object  # (B,) long: rows of the training features
    t: object  # (B,) long: diffusion steps in [0, T)
    eps: object  # (B, Dz) float32: noise shared by the positive and the negative
    neg: object  # (B,) long: negative class (global index), uniform over seen classes


def draw_step(step: int, seed: int, n: int, batch: int, z_dim: int, num_steps: int, seen_classes) -> StepDraw:
    """The global batch of one step: epoch-wise shuffling (drop-last), then t, ε and negatives."""
    import torch

    per_epoch = n // batch
    if per_epoch >= 1:
        epoch, pos = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        idx = perm[pos * batch : (pos + 1) * batch]
    else:  # fewer samples than one batch: sample with replacement
        idx = torch.randint(0, n, (batch,), generator=torch.Generator().manual_seed(seed * 7919 + step))
    g = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
    t = torch.randint(0, num_steps, (batch,), generator=g)
    eps = torch.randn(batch, z_dim, generator=g)
    seen = torch.as_tensor(np.asarray(seen_classes), dtype=torch.long)
    neg = seen[torch.randint(0, len(seen), (batch,), generator=g)]
    return StepDraw(idx, t, eps, neg)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up to 1, then cosine decay to 0 at `total`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


class Amp:
    """Mixed precision for training on CUDA (`train.amp`): autocast to bf16 / fp16, and a gradient
    scaler for fp16. `Amp("none", ...)` changes nothing (the faithful fp32 default)."""

    def __init__(self, mode: str, device: str) -> None:
        import torch

        if mode != "none" and not str(device).startswith("cuda"):
            raise ConfigError(
                f"train.amp={mode!r} needs a CUDA device, but training runs on {device!r}; "
                "set train.amp: none for CPU training."
            )
        self.mode = mode
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    def autocast(self):
        import torch

        return torch.autocast("cuda", dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()


def train_step(
    model,
    schedule,
    optimizer,
    z,
    labels,
    draw: StepDraw,
    tables: ClassTextTensors,
    cfg: RunConfig,
    amp: Amp | None = None,
    teacher=None,
) -> dict:
    """One optimisation step on (this rank's shard of) a batch; returns the loss terms as floats.

    teacher: a frozen denoiser whose predictions the model also learns (the distillation term)."""
    import torch

    from .loss import triplet_diffusion_loss

    pos_text = tables.indexed(labels)
    neg_text = tables.indexed(draw.neg)
    scaler = amp.scaler if amp is not None else None
    with amp.autocast() if amp is not None else contextlib.nullcontext():
        out = triplet_diffusion_loss(
            model,
            schedule,
            z,
            pos_text,
            neg_text,
            draw.t,
            draw.eps,
            cfg.loss,
            pos_label=labels,
            neg_label=draw.neg,
            teacher=teacher,
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(out["loss"]).backward()
        scaler.unscale_(optimizer)  # clip the true gradients
    else:
        out["loss"].backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return {k: float(out[k].detach().float().mean()) for k in ("loss", "diffusion", "triplet", "distill")}


def build_training(cfg: RunConfig, device: str):
    """(model, schedule, optimizer, lr scheduler) with the model initialised from cfg.train.seed."""
    import torch

    from ..models.denoiser import TDSMDenoiser
    from ..models.schedule import DDPMSchedule

    torch.manual_seed(cfg.train.seed)
    model = TDSMDenoiser(cfg.denoiser).to(device)
    schedule = DDPMSchedule(cfg.schedule)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.train.warmup_steps, cfg.train.iterations))
    return model, schedule, opt, sched


def train_denoiser(
    z_train: np.ndarray,
    y_train: np.ndarray,
    class_text,
    seen_classes: np.ndarray,
    cfg: RunConfig,
    out_dir: str | Path,
    dist: DistInfo = DistInfo(),
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    teacher=None,
    init_state: dict | None = None,
):
    """Train the denoiser; write checkpoints under out_dir/checkpoints and the final model in out_dir.

    z_train: (N, Dz) raw skeleton features; y_train: (N,) global labels (all seen); class_text: a
    `ClassText` over ALL classes (global index order). Returns (model, history).
    Distillation (`tdsm_edge.distill`): `init_state` starts the model from these weights (a teacher's:
    same parameter names), `teacher` adds the term that matches its predictions (`cfg.loss.w_distill`).
    """
    import torch
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    if len(z_train) == 0:
        raise DataError("no training features: the seen split is empty.")
    stray = sorted(set(np.unique(y_train).tolist()) - set(np.asarray(seen_classes).tolist()))
    if stray:
        raise DataError(
            f"training labels include classes {stray[:10]} outside the seen split: the denoiser "
            "must never see unseen classes. Check the split file against the feature folder."
        )
    stats = FeatureStats.fit(z_train) if cfg.train.standardize_features else FeatureStats.identity(z_train.shape[1])
    z_all = torch.from_numpy(stats.apply(z_train)).to(device)
    y_all = torch.from_numpy(np.asarray(y_train, np.int64)).to(device)
    tables = ClassTextTensors.from_class_text(class_text, device)
    model, schedule, opt, sched = build_training(cfg, device)
    if init_state is not None:
        load_into(model, init_state, "the initial weights (the teacher's)")
    if teacher is not None:
        teacher = teacher.to(device).eval().requires_grad_(False)
    amp = Amp(cfg.train.amp, device)
    terms_logged = ("loss", "diffusion", "triplet") + (("distill",) if teacher is not None else ())
    start, history = 0, {"step": [], **{k: [] for k in terms_logged}}
    ckpt_root = out_dir / "checkpoints"
    if resume:
        last = latest_checkpoint(ckpt_root)
        if last is None:
            raise CheckpointError(
                f"--resume was given but {str(ckpt_root)!r} holds no complete checkpoint; "
                "run without --resume to start fresh."
            )
        state, meta = load_module(last)
        load_into(model, state, f"checkpoint {last}")
        gen = torch.Generator()
        record = load_train_state(last, opt, sched, gen)
        start, history = int(record["step"]), record.get("history", history)
        if amp.scaler is not None and record.get("grad_scaler"):
            amp.scaler.load_state_dict(record["grad_scaler"])  # fp16: resume with the learned loss scale
        log.info("resumed from %s at step %d", last, start)
    net = model
    if dist.enabled:
        net = wrap_ddp(model, device)
    part = shard(cfg.train.batch_size, dist)
    log_every = max(1, cfg.train.iterations // 200)
    bar = tqdm(
        total=cfg.train.iterations,
        initial=start,
        desc="denoiser",
        unit="it",
        disable=not (progress and dist.is_main),
        leave=False,
    )
    t0 = time.perf_counter()
    model.train()
    for step in range(start, cfg.train.iterations):
        draw = draw_step(
            step, cfg.train.seed, len(z_all), cfg.train.batch_size, z_all.shape[1], cfg.schedule.num_steps, seen_classes
        )
        mine = StepDraw(
            draw.idx[part].to(device), draw.t[part].to(device), draw.eps[part].to(device), draw.neg[part].to(device)
        )
        terms = train_step(net, schedule, opt, z_all[mine.idx], y_all[mine.idx], mine, tables, cfg, amp, teacher)
        sched.step()
        bar.update(1)
        if step % log_every == 0 or step == cfg.train.iterations - 1:
            history["step"].append(step)
            for k in terms_logged:
                history[k].append(terms[k])
            bar.set_postfix(loss=f"{terms['loss']:.4f}", trip=f"{terms['triplet']:.4f}")
        every = cfg.train.checkpoint_every
        if dist.is_main and every and (step + 1) % every == 0 and step + 1 < cfg.train.iterations:
            _save_step(ckpt_root / f"step_{step + 1:07d}", model, opt, sched, step + 1, cfg, seen_classes, history, amp)
            prune_checkpoints(ckpt_root, keep=2)
    bar.close()
    model.eval()
    if dist.is_main:
        from ..models.folders import save_denoiser

        save_denoiser(out_dir, model, cfg, seen_classes, stats, history, seconds=time.perf_counter() - t0)
    return model, history


def _save_step(
    folder: Path, model, opt, sched, step: int, cfg: RunConfig, seen_classes, history, amp: Amp | None = None
) -> None:
    import torch

    save_module(folder, model.state_dict(), {"config": to_dict(cfg), "seen_classes": np.asarray(seen_classes).tolist()})
    extra = {"history": history}
    if amp is not None and amp.scaler is not None:
        extra["grad_scaler"] = amp.scaler.state_dict()
    save_train_state(folder, opt, sched, step, torch.Generator(), extra=extra)
