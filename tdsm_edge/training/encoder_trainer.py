"""Train the Shift-GCN skeleton encoder with cross-entropy on SEEN classes only, then extract features.

The classifier head sees only seen classes (labels remapped to 0..S-1); unseen-class sequences are
never touched until feature extraction, exactly as in the zero-shot protocol.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..config import EncoderConfig
from ..errors import DataError

log = logging.getLogger(__name__)


@dataclass
class EncoderResult:
    model: object  # ShiftGCN (eval mode)
    seen_classes: np.ndarray  # (S,) global indices in head order
    history: dict[str, list[float]] = field(default_factory=dict)
    val_accuracy: float = float("nan")  # seen-class top-1 on held-out seen samples
    seconds: float = 0.0


def _batches(n: int, batch: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch):
        yield order[i : i + batch]


def train_encoder(
    x_train: np.ndarray,
    y_train: np.ndarray,
    seen_classes: np.ndarray,
    cfg: EncoderConfig,
    seed: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> EncoderResult:
    """Train ShiftGCN on preprocessed windows.

    x_train: (N, 3, T, V, M) float32 (output of `preprocess_batch`); y_train: (N,) global labels, all
    in `seen_classes`. Returns the trained model in eval mode and the per-epoch history.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from ..models.shift_gcn import ShiftGCN

    seen_classes = np.asarray(seen_classes, np.int64)
    remap = {int(c): i for i, c in enumerate(seen_classes)}
    if not set(np.unique(y_train).tolist()) <= set(remap):
        raise DataError(
            "encoder training labels include classes outside the seen split; "
            "the encoder must be trained on seen classes only."
        )
    y_local = np.array([remap[int(c)] for c in y_train], np.int64)

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ShiftGCN(cfg, num_classes=len(seen_classes), num_joints=x_train.shape[3]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warm = min(steps_per_epoch, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / max(1, warm) if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm)))
        ),
    )
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_acc": []}
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="encoder", disable=not progress, unit="step", leave=False)
    for epoch in range(cfg.epochs):
        model.train()
        tot_loss, correct, seen = 0.0, 0, 0
        for idx in _batches(len(x_train), cfg.batch_size, rng):
            xb = torch.from_numpy(x_train[idx]).to(device)
            yb = torch.from_numpy(y_local[idx]).to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{tot_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
        history["loss"].append(tot_loss / seen)
        history["train_acc"].append(correct / seen)
        if x_val is not None and y_val is not None:
            history["val_acc"].append(seen_accuracy(model, x_val, y_val, seen_classes, device))
    bar.close()
    model.eval()
    val_acc = history["val_acc"][-1] if history["val_acc"] else float("nan")
    log.info("encoder: %d epochs in %.1fs, seen-class val accuracy %.3f", cfg.epochs, time.perf_counter() - t0, val_acc)
    return EncoderResult(model, seen_classes, history, val_acc, time.perf_counter() - t0)


def predict_logits(model, x: np.ndarray, device: str = "cpu", batch: int = 256) -> np.ndarray:
    """Classifier logits (N, S) for preprocessed windows (N, 3, T, V, M)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for idx in _batches(len(x), batch, None):
            out.append(model(torch.from_numpy(x[idx]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def seen_accuracy(model, x: np.ndarray, y: np.ndarray, seen_classes: np.ndarray, device: str = "cpu") -> float:
    """Top-1 of the seen-class head on held-out seen samples (global labels)."""
    logits = predict_logits(model, x, device)
    pred = np.asarray(seen_classes)[logits.argmax(1)]
    return float((pred == y).mean())


def extract_features(
    model, x: np.ndarray, device: str = "cpu", batch: int = 256, progress: bool = False, desc: str = "features"
) -> np.ndarray:
    """Skeleton features z (N, Dz) float32 for preprocessed windows (N, 3, T, V, M)."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    out = []
    with torch.no_grad():
        for idx in tqdm(list(_batches(len(x), batch, None)), desc=desc, disable=not progress, leave=False):
            out.append(model.features(torch.from_numpy(x[idx]).to(device)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)
