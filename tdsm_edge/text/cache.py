"""On-disk cache of per-prompt text features, so a class table is encoded once.

One safetensors file per (encoder_id, num_tokens, prompt):
    <cache_dir>/<slug(encoder_id)>-<sha256(encoder_id)[:8]>/L<num_tokens>/<sha256(prompt)>.safetensors
holding `global` (Dt,), `local` (L, Dt), `mask` (L,) and the full key in its metadata (checked on
read, so a hash collision or a moved file cannot return another prompt's features). Writes go
to a temp file in the same folder and are renamed into place, so readers never see half a file.
An unreadable entry is logged and encoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from tdsm_edge.errors import require
from tdsm_edge.text.base import TextEncoder, TextFeatures

log = logging.getLogger(__name__)

_META_KEY = "tdsm_edge.text_cache"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextCache:
    """Per-prompt feature cache rooted at `cache_dir` (created on first write)."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.root = Path(cache_dir)

    def entry_path(self, encoder_id: str, num_tokens: int, prompt: str) -> Path:
        """File holding one prompt's features for this encoder and L."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_id)[:80]
        folder = self.root / f"{slug}-{_sha256(encoder_id)[:8]}" / f"L{int(num_tokens)}"
        return folder / f"{_sha256(prompt)}.safetensors"

    def encode(self, encoder: TextEncoder, prompts: list[str], num_tokens: int, batch_size: int = 64) -> TextFeatures:
        """Like `encoder.encode`, but only prompts missing from the cache reach the model.

        Returns:
            TextFeatures with global_ (P, Dt), local (P, L, Dt), mask (P, L), in prompt order.
        """
        found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for prompt in dict.fromkeys(prompts):  # unique, order kept
            entry = self._read(encoder, num_tokens, prompt)
            if entry is not None:
                found[prompt] = entry
        misses = [p for p in dict.fromkeys(prompts) if p not in found]
        if misses:
            log.info("text cache: encoding %d of %d prompts with %s", len(misses), len(prompts), encoder.encoder_id)
            new = encoder.encode(misses, num_tokens, batch_size=batch_size)
            for i, prompt in enumerate(misses):
                entry = (new.global_[i], new.local[i], new.mask[i])
                self._write(encoder, num_tokens, prompt, entry)
                found[prompt] = entry
        if not prompts:
            return TextFeatures.concat([], num_tokens, encoder.dim)
        return TextFeatures(
            global_=np.stack([found[p][0] for p in prompts]),  # (P, Dt)
            local=np.stack([found[p][1] for p in prompts]),  # (P, L, Dt)
            mask=np.stack([found[p][2] for p in prompts]),  # (P, L)
        )

    def _key(self, encoder: TextEncoder, num_tokens: int, prompt: str) -> str:
        return json.dumps({"encoder_id": encoder.encoder_id, "num_tokens": int(num_tokens), "prompt": prompt})

    def _read(self, encoder: TextEncoder, num_tokens: int, prompt: str):
        path = self.entry_path(encoder.encoder_id, num_tokens, prompt)
        if not path.is_file():
            return None
        safetensors = require("safetensors", extra="train")
        try:
            with safetensors.safe_open(str(path), framework="numpy") as f:
                if (f.metadata() or {}).get(_META_KEY) != self._key(encoder, num_tokens, prompt):
                    raise ValueError("key in the file does not match this prompt/encoder/L")
                g, loc, m = f.get_tensor("global"), f.get_tensor("local"), f.get_tensor("mask")
            L, Dt = int(num_tokens), int(encoder.dim)
            if g.shape != (Dt,) or loc.shape != (L, Dt) or m.shape != (L,):
                raise ValueError(f"shapes {g.shape}, {loc.shape}, {m.shape} != ({Dt},), ({L}, {Dt}), ({L},)")
            return g.astype(np.float32), loc.astype(np.float32), m.astype(bool)
        except Exception as e:  # corrupt header/data raise various safetensors errors
            log.warning("text cache: ignoring unreadable entry %s (%s); encoding that prompt again", path, e)
            return None

    def _write(self, encoder: TextEncoder, num_tokens: int, prompt: str, entry) -> None:
        st = require("safetensors.numpy", package="safetensors", extra="train")
        path = self.entry_path(encoder.encoder_id, num_tokens, prompt)
        path.parent.mkdir(parents=True, exist_ok=True)
        g, loc, m = entry
        data = st.save(
            {
                "global": np.ascontiguousarray(g, np.float32),  # (Dt,)
                "local": np.ascontiguousarray(loc, np.float32),  # (L, Dt)
                "mask": np.ascontiguousarray(m, bool),  # (L,)
            },
            metadata={_META_KEY: self._key(encoder, num_tokens, prompt)},
        )
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
