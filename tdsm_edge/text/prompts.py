"""Class prompts and the per-class text table (`ClassText`) the denoiser is conditioned on.

Each class has a name ("kick something") and a one-sentence description. A *prompt set* picks
one of them; the paper encodes the label set and the description set separately and
concatenates them along channels, so Dc = len(prompt_sets) x Dt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdsm_edge.errors import CheckpointError, ConfigError, require
from tdsm_edge.text.base import TextEncoder, TextFeatures, TokenRows

PROMPT_SETS: tuple[str, ...] = ("label", "description")
_META_KEY = "tdsm_edge.class_text"
_SCHEMA = 1


@dataclass(frozen=True)
class ClassPrompts:
    """The text of one action class."""

    name: str  # class label as shown to users, e.g. "kick something"
    description: str  # one sentence describing the motion


def prompt_texts(classes: Sequence[ClassPrompts], prompt_set: str) -> list[str]:
    """The K prompts of one prompt set: "label" -> names as is, "description" -> descriptions."""
    if prompt_set == "label":
        return [c.name for c in classes]
    if prompt_set == "description":
        return [c.description for c in classes]
    raise ConfigError(
        f"Unknown prompt set {prompt_set!r}. Valid prompt sets: {', '.join(PROMPT_SETS)}; "
        "fix text.prompt_sets in the config."
    )


@dataclass(frozen=True)
class ClassText(TokenRows):
    """Text features of K classes, prompt sets concatenated on channels.

    Attributes:
        global_: (K, Dc) float32, Dc = len(prompt_sets) * Dt.
        local: (K, L, Dc) float32; each set's channels are zero where that set has padding.
        mask: (K, L) bool, OR of the prompt sets' masks.
        names: K class names, in row order.
        encoder_id: `TextEncoder.encoder_id` that produced the features.
        prompt_sets: prompt sets in channel order.
    """

    global_: np.ndarray  # (K, Dc) float32
    local: np.ndarray  # (K, L, Dc) float32
    mask: np.ndarray  # (K, L) bool
    names: tuple[str, ...]
    encoder_id: str
    prompt_sets: tuple[str, ...]

    def __post_init__(self) -> None:
        K, L, Dc = self.local.shape
        if self.global_.shape != (K, Dc) or self.mask.shape != (K, L) or len(self.names) != K:
            raise ConfigError(
                f"ClassText parts disagree: global_ {self.global_.shape}, local {self.local.shape}, "
                f"mask {self.mask.shape}, {len(self.names)} names; rebuild it with encode_classes()."
            )

    @property
    def num_classes(self) -> int:
        return self.local.shape[0]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ClassText:
        """Rows `indices` (class indices, in the given order) as a new ClassText."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)  # (K',)
        if idx.size and (idx.min() < -self.num_classes or idx.max() >= self.num_classes):
            raise ConfigError(f"Class indices {idx.tolist()} are out of range for {self.num_classes} classes.")
        return ClassText(
            global_=self.global_[idx],  # (K', Dc)
            local=self.local[idx],  # (K', L, Dc)
            mask=self.mask[idx],  # (K', L)
            names=tuple(self.names[i] for i in idx),
            encoder_id=self.encoder_id,
            prompt_sets=self.prompt_sets,
        )

    def save(self, path: str | Path) -> None:
        """Write a safetensors file (tensors + JSON metadata; no pickle)."""
        st = require("safetensors.numpy", package="safetensors", extra="train")
        meta = {
            "schema": _SCHEMA,
            "names": list(self.names),
            "encoder_id": self.encoder_id,
            "prompt_sets": list(self.prompt_sets),
        }
        tensors = {
            "global": np.ascontiguousarray(self.global_, np.float32),
            "local": np.ascontiguousarray(self.local, np.float32),
            "mask": np.ascontiguousarray(self.mask, bool),
        }
        from tdsm_edge.io import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a resumed run may reuse the file: never leave it half-written
            st.save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> ClassText:
        """Read a file written by `save`.

        Raises:
            CheckpointError: missing file, not a ClassText file, or an unknown schema.
        """
        st = require("safetensors.numpy", package="safetensors", extra="train")
        safetensors = require("safetensors", extra="train")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"Class text file {path} does not exist; write it with ClassText.save() or "
                "encode the classes again with encode_classes()."
            )
        try:
            with safetensors.safe_open(str(path), framework="numpy") as f:
                raw = (f.metadata() or {}).get(_META_KEY)
            tensors = st.load_file(str(path))
            meta = json.loads(raw) if raw is not None else None
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"Could not read class text file {path}: {e}. Re-encode the classes.") from e
        if meta is None or meta.get("schema") != _SCHEMA:
            raise CheckpointError(
                f"{path} is not a ClassText file of schema {_SCHEMA} (metadata key {_META_KEY!r} "
                "missing or another version); re-encode the classes with encode_classes()."
            )
        return cls(
            global_=tensors["global"],
            local=tensors["local"],
            mask=tensors["mask"].astype(bool),
            names=tuple(meta["names"]),
            encoder_id=meta["encoder_id"],
            prompt_sets=tuple(meta["prompt_sets"]),
        )


def encode_classes(
    encoder: TextEncoder,
    classes: Sequence[ClassPrompts],
    prompt_sets: Sequence[str] = PROMPT_SETS,
    num_tokens: int = 16,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
) -> ClassText:
    """Encode K classes with every prompt set and concatenate the sets along channels.

    Args:
        encoder: a TextEncoder (Dt = encoder.dim).
        classes: K class prompts.
        prompt_sets: S prompt-set names, in channel order.
        num_tokens: L local token slots per prompt.
        cache_dir: if given, per-prompt features are read from / written to this on-disk cache.
        batch_size: prompts per forward pass.

    Returns:
        ClassText with global_ (K, S*Dt), local (K, L, S*Dt), mask (K, L) = OR over sets.
    """
    if not prompt_sets:
        raise ConfigError("prompt_sets is empty; use e.g. ('label', 'description').")
    texts = [prompt_texts(classes, s) for s in prompt_sets]  # validates the names first
    feats: list[TextFeatures] = []
    for prompts in texts:
        if cache_dir is not None:
            from tdsm_edge.text.cache import TextCache

            feats.append(TextCache(cache_dir).encode(encoder, prompts, num_tokens, batch_size))
        else:
            feats.append(encoder.encode(prompts, num_tokens, batch_size=batch_size))
    return ClassText(
        global_=np.concatenate([f.global_ for f in feats], axis=-1),  # (K, S*Dt)
        local=np.concatenate([f.local for f in feats], axis=-1),  # (K, L, S*Dt)
        mask=np.logical_or.reduce([f.mask for f in feats]),  # (K, L)
        names=tuple(c.name for c in classes),
        encoder_id=encoder.encoder_id,
        prompt_sets=tuple(prompt_sets),
    )
