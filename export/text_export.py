"""Optional ONNX export of the MiniLM text encoder, so a device can add new action names without torch.

Graph `text_encoder`: `input_ids, attention_mask (B, S) int64 → global (B, 384), local (B, L, 384)
float32, mask (B, L) bool` — exactly `tdsm_edge.text.minilm.MiniLMEncoder._encode_batch`:

    global   masked mean of the last hidden state over ALL real tokens of the prompt (up to the
             tokenizer's 256-token truncation), L2-normalised only for global_norm="l2": it does not
             depend on L
    local    the last hidden state of tokens 0..L-1, zeroed where the token is padding
    mask     attention_mask[:, :L] as bool

Because `global` pools the whole prompt, the token axis S is dynamic (S >= L): a prompt longer than
L tokens is NOT cut to L before the forward pass, exactly as in torch. `tokenize` pads every batch
to S = max(L, longest prompt) so the graph can always slice L token slots. B and S are both dynamic.

Device side (no torch): `tokenize(texts, tokenizer_path, num_tokens)` uses only the `tokenizers`
package (Rust) and numpy, with the `tokenizer.json` that `export_text_encoder` writes (its
truncation is set to the encoder's 256 tokens and its padding removed, so the file alone
reproduces the torch tokenisation). This module imports torch lazily, inside the export functions,
so `from export.text_export import tokenize` works where torch is absent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from tdsm_edge.errors import ConfigError, ExportError, InputError, require

log = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("global", "local", "mask")
SEQ_AXIS = "tokens"
TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
PAD_TOKEN = "[PAD]"


def tokenize(texts: list[str], tokenizer_path: str | Path, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask for the text-encoder graph, numpy and `tokenizers` only.

    Args:
        texts: P prompts.
        tokenizer_path: the `tokenizer.json` written by `export_text_encoder` (or its folder).
        num_tokens: L, the local token slots the graph was exported with.
    Returns:
        ids `(P, S) int64` and mask `(P, S) int64` (1 real, 0 padding), S = max(L, longest prompt);
        prompts longer than the file's truncation length (256) are truncated, as in torch.
    """
    if isinstance(texts, str):
        raise InputError("tokenize() takes a list of prompts, got one string; wrap it in a list.")
    if num_tokens < 1:
        raise ConfigError(f"num_tokens must be >= 1, got {num_tokens}")
    tok = _load_tokenizer(tokenizer_path)
    pad_id = tok.token_to_id(PAD_TOKEN)
    encs = tok.encode_batch(list(texts))
    S = max([num_tokens, *(len(e.ids) for e in encs)])
    ids = np.full((len(encs), S), pad_id, np.int64)  # (P, S)
    mask = np.zeros((len(encs), S), np.int64)  # (P, S)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = e.attention_mask
    return ids, mask


def _load_tokenizer(path: str | Path):
    tokenizers = require("tokenizers")  # not in an extra yet: pip install tokenizers
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise InputError(
            f"tokenizer file {str(path)!r} does not exist; export_text_encoder writes it next "
            "to the text-encoder graph."
        )
    tok = tokenizers.Tokenizer.from_file(str(path))
    if tok.padding is not None:
        # the bundled file pads everything to 128; that would change S (harmless) but also hides the
        # real lengths from the caller. Always pad here, in numpy.
        tok.no_padding()
    if tok.token_to_id(PAD_TOKEN) is None:
        raise InputError(f"{path} has no {PAD_TOKEN} token; it is not a MiniLM (BERT) tokenizer file.")
    return tok


def export_text_encoder(
    onnx_path: str | Path,
    num_tokens: int,
    tokenizer_dir: str | Path | None = None,
    example_batch: int = 2,
    prompt_axis: str | None = None,
    global_norm: str = "none",
):
    """Export the MiniLM text encoder and save its tokenizer.

    Args:
        onnx_path: output `.onnx` file (fp32; about 90 MB of weights, inline).
        num_tokens: L, the local token slots (the run's `text.num_tokens`).
        tokenizer_dir: where `tokenizer.json` and `vocab.txt` go; default the graph's folder.
        example_batch: traced batch size (>= 2; B and S stay dynamic).
        prompt_axis: the name of the dynamic prompt axis in the graph (default "batch"; an engine
            bundle names it "classes": one prompt per class, see `tdsm_edge.runtime.iospec.text_io`).
        global_norm: "none" or "l2", as the MiniLMEncoder that encoded the run's classes.
    Returns:
        (ExportRecord of graph "text_encoder", [tokenizer files written]).
    """
    torch = require("torch", extra="train")
    from tdsm_edge.text.minilm import minilm_model_dir

    from .onnx_export import BATCH_AXIS, _check_args, _check_io, _export

    if num_tokens < 1:
        raise ConfigError(f"num_tokens must be >= 1, got {num_tokens}")
    _check_args("fp32", example_batch, 2)
    onnx_path = Path(onnx_path)
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else onnx_path.parent
    files = save_tokenizer(tok_dir)
    graph = _text_graph(minilm_model_dir(), num_tokens, global_norm)
    # trace with S > L so the L-slice is a real slice of a longer (dynamic) axis
    ids, mask = tokenize(["a person waves the right hand", "kick"], tok_dir / TOKENIZER_FILE, num_tokens + 3)
    ids, mask = torch.from_numpy(ids[:1].repeat(example_batch, 0)), torch.from_numpy(mask[:1].repeat(example_batch, 0))
    mask[1:, ids.shape[1] // 2 :] = 0  # a padded row, so the mask really flows through the graph
    B = prompt_axis or BATCH_AXIS
    Bd = torch.export.Dim(B, min=1)
    Sd = torch.export.Dim(SEQ_AXIS, min=num_tokens, max=graph.max_length)
    dynamic = {"input_ids": {0: Bd, 1: Sd}, "attention_mask": {0: Bd, 1: Sd}}
    axes = {
        "input_ids": {0: B, 1: SEQ_AXIS},
        "attention_mask": {0: B, 1: SEQ_AXIS},
        "global": {0: B},
        "local": {0: B},
        "mask": {0: B},
    }
    record = _export(
        graph, (ids, mask), None, dynamic, list(OUTPUT_NAMES), axes, onnx_path, "text_encoder", "fp32", None
    )
    _check_io(record, list(INPUT_NAMES), list(OUTPUT_NAMES))
    return record, files


def export_bundle_text(folder: str | Path, num_tokens: int, global_norm: str = "none") -> tuple[object, dict]:
    """The text graph of an engine bundle: `text_encoder.onnx` (prompt axis "classes") and `vocab.txt` in
    `folder`, and the manifest's record of what the runtime needs to tokenize like the torch encoder.

    The runtime tokenizes with `tdsm_edge.runtime.tokenizer` (pure Python, vocab.txt), so the bundle
    keeps no tokenizer.json: its settings are checked here and recorded instead.
    Returns:
        (ExportRecord of graph "text_encoder", {"vocab", "max_length", "tokenizer"}) for `manifest.text`.
    """
    import tempfile

    from tdsm_edge.runtime.iospec import CLASSES, TEXT_GRAPH

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="tdsm-tokenizer-") as tmp:
        record, _ = export_text_encoder(
            folder / f"{TEXT_GRAPH}.onnx", num_tokens, tokenizer_dir=tmp, prompt_axis=CLASSES, global_norm=global_norm
        )
        settings, max_length = tokenizer_settings(Path(tmp) / TOKENIZER_FILE)
        shutil.copyfile(Path(tmp) / "vocab.txt", folder / VOCAB_FILE)
    return record, {"vocab": VOCAB_FILE, "max_length": max_length, "tokenizer": settings.to_dict()}


def tokenizer_settings(path: str | Path):
    """(TokenizerSettings, max_length) of a BERT `tokenizer.json`; ExportError when the file configures a
    pipeline the runtime's WordPiece tokenizer does not implement (it would tokenize differently)."""
    import json

    from tdsm_edge.runtime.tokenizer import TokenizerSettings

    d = json.loads(Path(path).read_text())
    norm, pre, model, post = (
        d.get("normalizer") or {},
        d.get("pre_tokenizer") or {},
        d.get("model") or {},
        d.get("post_processor") or {},
    )
    problems = []
    if norm.get("type") != "BertNormalizer":
        problems.append(f"normalizer {norm.get('type')!r} (BertNormalizer)")
    if pre.get("type") != "BertPreTokenizer":
        problems.append(f"pre_tokenizer {pre.get('type')!r} (BertPreTokenizer)")
    if model.get("type") != "WordPiece":
        problems.append(f"model {model.get('type')!r} (WordPiece)")
    single = [next(iter(x.values()))["id"] for x in post.get("single", [])]
    if post.get("type") != "TemplateProcessing" or len(single) != 3 or single[1] != "A":
        problems.append(f"post_processor {post.get('type')!r} {single} (TemplateProcessing [CLS] $A [SEP])")
    added = d.get("added_tokens", [])
    if any(t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
        problems.append("added tokens that are normalized, stripped or single-word (plain special tokens)")
    trunc = d.get("truncation") or {}
    if trunc and (trunc.get("stride", 0) != 0 or trunc.get("strategy") not in (None, "LongestFirst")):
        problems.append(f"truncation {trunc} (LongestFirst, stride 0)")
    if problems:
        raise ExportError(
            f"{path}: the runtime's WordPiece tokenizer cannot reproduce this tokenizer: "
            + "; ".join(problems)
            + " (expected in brackets). Build with --no-text-encoder."
        )
    lowercase = bool(norm.get("lowercase", True))
    strip = norm.get("strip_accents")
    settings = TokenizerSettings(
        lowercase=lowercase,
        strip_accents=lowercase if strip is None else bool(strip),
        clean_text=bool(norm.get("clean_text", True)),
        handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
        unk_token=model["unk_token"],
        cls_token=single[0],
        sep_token=single[2],
        pad_token=PAD_TOKEN,
        continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
        max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
        special_tokens=tuple(t["content"] for t in added),
    )
    if not trunc:
        raise ExportError(f"{path} sets no truncation; save it with save_tokenizer (the encoder's max length)")
    return settings, int(trunc["max_length"])


def save_tokenizer(folder: str | Path) -> list[str]:
    """Write MiniLM's `tokenizer.json` (truncation 256, no padding: the torch encoder's settings) and
    `vocab.txt` into `folder`; returns the paths."""
    tokenizers = require("tokenizers")  # not in an extra yet: pip install tokenizers
    from tdsm_edge.text.minilm import DEFAULT_MAX_SEQ_LENGTH, max_seq_length_of, minilm_model_dir

    src = minilm_model_dir()
    max_len = max_seq_length_of(src, DEFAULT_MAX_SEQ_LENGTH)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizers.Tokenizer.from_file(str(src / TOKENIZER_FILE))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    tok.save(str(folder / TOKENIZER_FILE))
    shutil.copyfile(src / "vocab.txt", folder / "vocab.txt")
    return [str(folder / TOKENIZER_FILE), str(folder / "vocab.txt")]


def _text_graph(model_dir: Path, num_tokens: int, global_norm: str = "none"):
    """The export module (built here so that importing this file never imports torch)."""
    import torch
    import torch.nn.functional as F
    import transformers

    from tdsm_edge.text.minilm import DEFAULT_MAX_SEQ_LENGTH, max_seq_length_of

    class TextEncoderGraph(torch.nn.Module):
        """`(input_ids, attention_mask) (B, S) int64 → global (B, Dt), local (B, L, Dt), mask (B, L) bool`."""

        def __init__(self) -> None:
            super().__init__()
            try:
                self.bert = transformers.AutoModel.from_pretrained(
                    str(model_dir), local_files_only=True, attn_implementation="eager"
                )
            except Exception as e:
                raise ExportError(f"cannot load MiniLM from {model_dir}: {e}") from e
            self.bert.eval().requires_grad_(False)
            self.num_tokens, self.global_norm = num_tokens, global_norm
            self.max_length = max_seq_length_of(model_dir, DEFAULT_MAX_SEQ_LENGTH)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            L = self.num_tokens
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state.float()  # (B, S, Dt)
            real = attention_mask.to(hidden.dtype)  # (B, S)
            pooled = (hidden * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp(min=1e-9)  # (B, Dt)
            global_ = F.normalize(pooled, p=2, dim=-1) if self.global_norm == "l2" else pooled  # (B, Dt)
            local = hidden[:, :L] * real[:, :L, None]  # (B, L, Dt) zero at padding
            return global_, local, attention_mask[:, :L] > 0  # mask (B, L) bool

    return TextEncoderGraph().eval()
