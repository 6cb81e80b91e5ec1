"""OpenCLIP text tower (ViT-H-14 / ViT-L-14 / ViT-B-32) loaded offline from a local weights file.

The paper uses the OpenCLIP ViT-H-14 text tower. The published TDSM code (KAIST-VICLab/TDSM,
`train.py`, `Trainer.text_prompt`) loads it as the `text_encoder` of a diffusers pipeline
(HF `CLIPTextModel`, hidden 1024), tokenizes each prompt with `padding="max_length",
max_length=35, truncation=True`, and keeps `last_hidden_state` (35 tokens, after the final
LayerNorm) plus `pooler_output` — the final-LayerNorm state at the EOT token, NOT projected and
NOT normalised. No attention mask is used, so pad positions carry real model states.

What this encoder returns (W = transformer width = Dt):
- local: `ln_final` output per token for positions 0..L-1, computed with a context of exactly L
  (identical to the first L positions of a 77-token pass, because attention is causal).
  Prompts longer than L tokens are truncated as open_clip (and HF) do: [SOT] + first L-2 word
  tokens + [EOT], so the EOT token is always kept.
- mask: True for positions up to and including the EOT token.
- global (`pooling`): "eot" (default, as the published code) = the `ln_final` state at the EOT
  token; "projected" = that state times `text_projection` (the `encode_text` output,
  unnormalised). "projected" is refused when the projection changes the width (it does not for
  these three models: 1024/1024, 768/768, 512/512).
- `pad_states`: "zero" (default; the package contract: pads are zero and masked) or "model"
  (keep the model's states at pad positions and set the mask all True, as the published code
  feeds them; pads use token id 0 as open_clip's tokenizer does).
- `skip_last_layers`: drop the last N residual blocks before `ln_final`. The diffusers text
  encoders built on OpenCLIP ViT-H-14 (Stable Diffusion 2.x) keep 23 of its 24 layers, so
  reproducing the published features from the open_clip laion2b_s32b_b79k weights needs
  `skip_last_layers=1` (inferred: the stored published code does not name its pipeline).
  `TDSM_PUBLISHED_OPTIONS` collects these settings.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tdsm_edge.errors import CheckpointError, ConfigError, require
from tdsm_edge.text.base import TextEncoder

log = logging.getLogger(__name__)

OPENCLIP_MODELS: tuple[str, ...] = ("ViT-H-14", "ViT-L-14", "ViT-B-32")
POOLINGS: tuple[str, ...] = ("eot", "projected")
PAD_STATES: tuple[str, ...] = ("zero", "model")
# Options that reproduce the published TDSM text features from open_clip ViT-H-14 weights
# (use with num_tokens=35).
TDSM_PUBLISHED_OPTIONS: dict = {"pooling": "eot", "skip_last_layers": 1, "pad_states": "model"}

# Where to get weights, by open_clip pretrained tag (open_clip.list_pretrained_tags_by_model).
_WEIGHTS_HINT = {
    "ViT-H-14": "open_clip 'ViT-H-14' / 'laion2b_s32b_b79k' (Hugging Face repo "
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K, file open_clip_pytorch_model.bin or "
    "open_clip_model.safetensors)",
    "ViT-L-14": "open_clip 'ViT-L-14' / 'laion2b_s32b_b82k' (Hugging Face repo "
    "laion/CLIP-ViT-L-14-laion2B-s32B-b82K, file open_clip_pytorch_model.bin)",
    "ViT-B-32": "open_clip 'ViT-B-32' / 'laion2b_s34b_b79k' (Hugging Face repo "
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K, file open_clip_pytorch_model.bin)",
}


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, streamed (a ViT-H-14 checkpoint is ~4 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class OpenCLIPEncoder(TextEncoder):
    """Frozen OpenCLIP text tower; see the module docstring for what global/local/mask hold."""

    def __init__(
        self,
        model_name: str,
        checkpoint: str | Path | None,
        device: str = "cpu",
        *,
        pooling: str = "eot",
        skip_last_layers: int = 0,
        pad_states: str = "zero",
        random_init_seed: int | None = None,
        global_norm: str = "none",
    ) -> None:
        """Build the model (no download) and load `checkpoint` into it.

        Args:
            model_name: one of OPENCLIP_MODELS.
            checkpoint: local full-CLIP state dict (.bin / .pt / .pth / .safetensors).
            device: torch device string.
            pooling: "eot" or "projected" (see module docstring).
            skip_last_layers: residual blocks to drop at the end of the text transformer.
            pad_states: "zero" or "model" (see module docstring).
            random_init_seed: with checkpoint=None, use seeded random weights instead
                (tests and smoke runs only; encoder_id says "random<seed>").
            global_norm: "none" (the pooled state as is, as published) or "l2" (unit length).
        """
        torch = require("torch", extra="train")
        open_clip = require("open_clip", package="open-clip-torch", extra="train")
        _check_options(model_name, pooling, pad_states)
        self.model_name, self.pooling, self.pad_states = model_name, pooling, pad_states
        self.device = torch.device(device)

        if checkpoint is None and random_init_seed is None:
            raise CheckpointError(_missing_message(model_name, None))
        if checkpoint is not None and not Path(checkpoint).is_file():  # fail before building
            raise CheckpointError(_missing_message(model_name, Path(checkpoint)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0 if random_init_seed is None else random_init_seed)
            model = open_clip.create_model(model_name, pretrained=None)
        if checkpoint is not None:
            weights_tag = _load_weights(open_clip, model, model_name, Path(checkpoint))
        else:
            weights_tag = f"random{random_init_seed}"
        if hasattr(model, "visual"):
            del model.visual  # the image tower is never used; free its memory (~2.5 GB for H-14)
        if not hasattr(model, "token_embedding"):
            raise ConfigError(
                f"open_clip model {model_name!r} has a custom text tower this encoder does not "
                f"support; use one of {OPENCLIP_MODELS}."
            )
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.eot_token_id = int(self.tokenizer.eot_token_id)

        num_layers = len(model.transformer.resblocks)
        if not 0 <= skip_last_layers < num_layers:
            raise ConfigError(
                f"skip_last_layers={skip_last_layers} is out of range for {model_name} "
                f"({num_layers} text layers); use 0..{num_layers - 1}."
            )
        self.num_layers = num_layers - skip_last_layers
        self.dim = int(model.transformer.width)
        proj = model.text_projection
        proj_out = (
            None if proj is None else int(proj.out_features if isinstance(proj, torch.nn.Linear) else proj.shape[1])
        )
        if pooling == "projected" and proj_out not in (None, self.dim):
            raise ConfigError(
                f"pooling='projected' gives {proj_out}-d global vectors but the {model_name} tokens "
                f"are {self.dim}-d, and TextFeatures needs one width Dt. Use pooling='eot'."
            )

        parts = [f"openclip:{model_name}:{weights_tag}"]
        if pooling != "eot":
            parts.append(f"pool={pooling}")
        if skip_last_layers:
            parts.append(f"layers={self.num_layers}")
        if pad_states != "zero":
            parts.append(f"pads={pad_states}")
        self.encoder_id = self._identify(":".join(parts), global_norm)
        log.info("loaded %s (%d layers, Dt=%d) on %s", self.encoder_id, self.num_layers, self.dim, self.device)

    def _encode_batch(self, prompts: list[str], num_tokens: int):
        import torch

        L = num_tokens
        ctx = int(self.model.context_length)
        if L > ctx:
            raise ConfigError(
                f"num_tokens={L} exceeds the {self.model_name} text context of {ctx} tokens; "
                f"set text.num_tokens <= {ctx}."
            )
        tokens = self.tokenizer(prompts, context_length=L).to(self.device)  # (b, L) int64
        hidden = self.token_hidden_states(tokens)  # (b, L, W)
        rows = torch.arange(tokens.shape[0], device=self.device)
        eot = (tokens == self.eot_token_id).int().argmax(dim=-1)  # (b,) first EOT position
        global_ = hidden[rows, eot]  # (b, W)
        if self.pooling == "projected":
            global_ = self._project(global_)  # (b, W)
        if self.pad_states == "model":
            mask = torch.ones_like(tokens, dtype=torch.bool)  # (b, L)
        else:
            mask = torch.arange(L, device=self.device)[None, :] <= eot[:, None]  # (b, L)
        return global_.float().cpu().numpy(), hidden.float().cpu().numpy(), mask.cpu().numpy()

    def token_hidden_states(self, tokens):
        """`ln_final` output of the (possibly shortened) text transformer.

        Args:
            tokens: (b, L) int64 token ids, L <= context length.
        Returns:
            (b, L, W) tensor, the model's dtype.
        """
        import torch

        m = self.model
        L = tokens.shape[1]
        with torch.no_grad():
            cast = m.transformer.get_cast_dtype()
            x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:L].to(cast)  # (b, L, W)
            attn_mask = None if m.attn_mask is None else m.attn_mask[:L, :L]  # (L, L) causal
            if not m.transformer.batch_first:
                x = x.transpose(0, 1)  # (L, b, W)
            for block in m.transformer.resblocks[: self.num_layers]:
                x = block(x, attn_mask=attn_mask)
            if not m.transformer.batch_first:
                x = x.transpose(0, 1)  # (b, L, W)
            return m.ln_final(x)  # (b, L, W)

    def _project(self, pooled):
        """Apply `text_projection` (a Linear or a (W, E) matrix) as `encode_text` does."""
        import torch

        proj = self.model.text_projection
        with torch.no_grad():
            if proj is None:
                return pooled
            return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj  # (b, E)


def _load_weights(open_clip, model, model_name: str, path: Path) -> str:
    """Load a full CLIP state dict into `model`; return the weights tag for encoder_id."""
    if not path.is_file():
        raise CheckpointError(_missing_message(model_name, path))
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as e:  # torch / safetensors raise many types for bad files
        raise CheckpointError(
            f"Could not load OpenCLIP weights from {path}: {type(e).__name__}: {e}. The file "
            "must be a full open_clip CLIP state dict (.bin/.pt/.pth/.safetensors) for "
            f"{model_name}; check that text.encoder matches the checkpoint's architecture."
        ) from e
    return file_sha256(path)[:16]


def _check_options(model_name: str, pooling: str, pad_states: str) -> None:
    if model_name not in OPENCLIP_MODELS:
        raise ConfigError(
            f"Unknown OpenCLIP model {model_name!r}; valid: {', '.join(OPENCLIP_MODELS)}. "
            "Set text.encoder to 'openclip:<model>'."
        )
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling={pooling!r} is not one of {POOLINGS}.")
    if pad_states not in PAD_STATES:
        raise ConfigError(f"pad_states={pad_states!r} is not one of {PAD_STATES}.")


def _missing_message(model_name: str, path: Path | None) -> str:
    what = "No OpenCLIP checkpoint was given" if path is None else f"OpenCLIP checkpoint {path} does not exist"
    return (
        f"{what}, and the {model_name} text encoder needs local weights (nothing is downloaded). "
        f"Get the {_WEIGHTS_HINT.get(model_name, model_name)} weights on a machine with internet "
        "access, copy the file here, and put its path in the config's text.checkpoint."
    )
