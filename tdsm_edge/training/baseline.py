"""A direct-alignment zero-shot baseline on the same skeleton features and class text as TDSM.

Skeleton features z are standardised with training statistics and mapped by an MLP into the text
space; class text global vectors pass through a residual linear map (identity at init). Training is
InfoNCE / cross-entropy over cosine similarities / temperature against the SEEN classes' text only.
At test the class with the highest cosine similarity wins; `errors` returns the NEGATIVE cosine so
the score convention (lower is better) is the same as TDSM's denoising errors.

Why a residual text map: with only S seen classes, a free linear map is constrained on the span of
S text vectors only; starting from the identity (and decaying the residual) keeps unseen-class text
directions intact instead of collapsing them onto the seen span.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_into, load_module, save_module
from ..config import BaselineConfig, section_from_dict, to_dict
from ..errors import CheckpointError, InputError

log = logging.getLogger(__name__)

__all__ = ["AlignmentBaseline"]

_FILES = ("model.safetensors", "config.json")  # a `tdsm_edge.checkpoint.save_module` folder
_BATCH = 256


def _resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available else cpu; anything else as torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_2d(x: np.ndarray, width: int, name: str) -> np.ndarray:
    """Validate a (N, width) finite array and return it as float32."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != width:
        raise InputError(f"{name} must have shape (N, {width}), got {x.shape}; check the feature/text width")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf; check the feature extraction")
    return x


class AlignmentBaseline(nn.Module):
    """Skeleton MLP + residual text projection, scored by cosine similarity.

    z_dim: Dz (skeleton feature width); text_dim: Dt (class text global vector width);
    cfg: BaselineConfig (epochs, lr, temperature, hidden_dim).
    """

    def __init__(self, z_dim: int, text_dim: int, cfg: BaselineConfig = BaselineConfig()) -> None:
        super().__init__()
        self.z_dim, self.text_dim, self.cfg = int(z_dim), int(text_dim), cfg
        self.skel = nn.Sequential(nn.Linear(z_dim, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, text_dim))
        self.text_residual = nn.Linear(text_dim, text_dim)
        nn.init.zeros_(self.text_residual.weight)
        nn.init.zeros_(self.text_residual.bias)
        # training statistics of z, stored with the weights
        self.register_buffer("z_mean", torch.zeros(z_dim))
        self.register_buffer("z_std", torch.ones(z_dim))
        self.seen_classes: list[int] = []
        self.history: dict[str, list[float]] = {"loss": []}

    # ------------------------------------------------------------ model
    def embed_skeleton(self, z: torch.Tensor) -> torch.Tensor:
        """(N, Dz) raw features -> (N, Dt) unit-norm embeddings."""
        return F.normalize(self.skel((z - self.z_mean) / self.z_std), dim=-1)

    def embed_text(self, t: torch.Tensor) -> torch.Tensor:
        """(K, Dt) class text global vectors -> (K, Dt) unit-norm embeddings."""
        return F.normalize(t + self.text_residual(t), dim=-1)

    def _reset(self, seed: int) -> None:
        """Re-initialise all weights deterministically from `seed` (global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in self.skel:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        nn.init.zeros_(self.text_residual.weight)
        nn.init.zeros_(self.text_residual.bias)

    # ------------------------------------------------------------ training
    def fit(
        self,
        z_train: np.ndarray,
        y_train: np.ndarray,
        class_text_global: np.ndarray,
        seen_classes: np.ndarray,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
    ) -> AlignmentBaseline:
        """Train on seen classes only.

        z_train: (N, Dz) float32; y_train: (N,) int64 global class indices (all in seen_classes);
        class_text_global: (K_all, Dt) float32 text vectors indexed by global class;
        seen_classes: (S,) int global indices of the seen classes; seed: init + shuffling seed.
        AdamW (cfg.lr, weight decay 0.01), cfg.epochs epochs of mini-batches of 256.
        """
        from tqdm.auto import tqdm

        z = _as_2d(z_train, self.z_dim, "z_train")
        text = _as_2d(class_text_global, self.text_dim, "class_text_global")
        y = np.asarray(y_train).astype(np.int64)
        seen = np.asarray(seen_classes).astype(np.int64).ravel()
        if y.shape != (z.shape[0],):
            raise InputError(f"y_train must have shape ({z.shape[0]},), got {y.shape}")
        if seen.size < 2 or len(np.unique(seen)) != seen.size or seen.min() < 0 or seen.max() >= text.shape[0]:
            raise InputError(
                f"seen_classes must be >= 2 distinct indices into class_text_global "
                f"(K_all={text.shape[0]}), got {seen.tolist()}"
            )
        lookup = np.full(text.shape[0], -1, dtype=np.int64)
        lookup[seen] = np.arange(seen.size)
        if y.size == 0 or y.min() < 0 or y.max() >= text.shape[0] or (lookup[y] < 0).any():
            raise InputError(
                "every y_train label must be one of seen_classes; the baseline trains on seen classes only"
            )
        target = lookup[y]  # (N,) index into the seen list

        dev = _resolve_device(device)
        self._reset(seed)
        mean, std = z.mean(0), z.std(0)
        self.z_mean.copy_(torch.from_numpy(mean))
        self.z_std.copy_(torch.from_numpy(np.maximum(std, 1e-6)))
        self.to(dev).train()
        self.seen_classes = seen.tolist()
        self.history = {"loss": []}

        z_t = torch.from_numpy(z).to(dev)  # (N, Dz)
        y_t = torch.from_numpy(target).to(dev)  # (N,)
        text_seen = torch.from_numpy(text[seen]).to(dev)  # (S, Dt)
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=0.01)
        gen = torch.Generator().manual_seed(seed)
        N = z.shape[0]
        bar = tqdm(range(self.cfg.epochs), desc="baseline", unit="epoch", disable=not progress)
        for _ in bar:
            order = torch.randperm(N, generator=gen).to(dev)
            total = 0.0
            for i in range(0, N, _BATCH):
                idx = order[i : i + _BATCH]
                logits = self.embed_skeleton(z_t[idx]) @ self.embed_text(text_seen).T / self.cfg.temperature  # (B, S)
                loss = F.cross_entropy(logits, y_t[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
            self.history["loss"].append(total / N)
            bar.set_postfix(loss=f"{total / N:.4f}")
        self.eval()
        log.info(
            "baseline trained: %d samples, %d seen classes, final loss %.4f",
            N,
            seen.size,
            self.history["loss"][-1] if self.history["loss"] else float("nan"),
        )
        return self

    # ------------------------------------------------------------ scoring
    @torch.no_grad()
    def errors(self, z: np.ndarray, class_text_global: np.ndarray) -> np.ndarray:
        """Negative cosine similarity: (N, Dz) features x (K, Dt) class text -> (N, K) float32, lower is better."""
        z = _as_2d(z, self.z_dim, "z")
        text = _as_2d(class_text_global, self.text_dim, "class_text_global")
        was_training = self.training
        self.eval()
        dev = self.z_mean.device
        t = self.embed_text(torch.from_numpy(text).to(dev))  # (K, Dt)
        out = [
            (-(self.embed_skeleton(torch.from_numpy(z[i : i + _BATCH]).to(dev)) @ t.T)).cpu()
            for i in range(0, z.shape[0], _BATCH)
        ]
        self.train(was_training)
        res = torch.cat(out) if out else torch.zeros(0, text.shape[0])
        return res.numpy().astype(np.float32)  # (N, K)

    def predict(self, z: np.ndarray, class_text_global: np.ndarray) -> np.ndarray:
        """(N,) int64 column index of the nearest class text."""
        return self.errors(z, class_text_global).argmin(axis=1).astype(np.int64)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write `model.safetensors` + `config.json` into folder `path` (created; atomic per file)."""
        folder = Path(path)
        save_module(
            folder,
            self.state_dict(),
            {
                "kind": "alignment_baseline",
                "z_dim": self.z_dim,
                "text_dim": self.text_dim,
                "cfg": to_dict(self.cfg),
                "seen_classes": self.seen_classes,
                "history": self.history,
            },
        )
        return folder

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> AlignmentBaseline:
        """Rebuild a baseline saved by `save` (safetensors + json; no pickle)."""
        folder = Path(path)
        if not all((folder / f).is_file() for f in _FILES):
            raise CheckpointError(
                f"{str(folder)!r} is not a saved baseline: expected {' and '.join(_FILES)} inside; "
                "save one with AlignmentBaseline.save(folder)"
            )
        state, meta = load_module(folder)
        where, fix = f"baseline checkpoint in {str(folder)!r}", "Re-save it with this version of tdsm_edge."
        try:
            model = cls(
                meta["z_dim"], meta["text_dim"], section_from_dict(BaselineConfig, meta["cfg"], "config.json cfg")
            )
        except (KeyError, TypeError, ValueError) as e:  # ConfigError is a ValueError
            raise CheckpointError(
                f"{where} is incomplete or does not match the model ({e}); re-save it with this version of tdsm_edge"
            ) from e
        load_into(model, state, where, fix)
        model.seen_classes = list(meta.get("seen_classes", []))
        model.history = dict(meta.get("history", {"loss": []}))
        return model.to(_resolve_device(device)).eval()
