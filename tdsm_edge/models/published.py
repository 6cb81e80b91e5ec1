"""Load checkpoints written by the published TDSM training code into our `TDSMDenoiser`.

The published code (KAIST-VICLab/TDSM, `train.py`) prepares its `DiT` (`model/dit.py`) with
`accelerate` and saves it with `Accelerator.save_state(dir)`. For model 0 that writes
`dir/model.safetensors` (accelerate's default `safe_serialization=True`) or `dir/pytorch_model.bin`
(a pickle: older accelerate or `safe_serialization=False`), next to optimizer / scheduler / RNG
files that are ignored here. The state dict is taken with `unwrap=False`, so a model wrapped by
DDP (multi-GPU launch) carries a `module.` prefix and a `torch.compile`d one `_orig_mod.`; both are
stripped.

Parameter names: ours are the published ones, key for key (`published_state_dict_keys`, pinned by
`tests/models/test_denoiser.py` and `tests/models/test_published.py`), so no mapping table is
needed. The architecture is read from the tensors: D = hidden, Dz = `in_channels` (256),
Dc = `cond_size` (2048), L = local tokens (35, from `fl_pos_embed`), depth, MLP ratio. The number of
attention heads is not visible in any shape, so it is an argument (paper: 12); a wrong value loads
without error but changes the outputs. The published model has no padding mask, so the config gets
`mask_text_padding=False`, and it was trained on raw (not standardised) skeleton features.

Convert a published checkpoint into a denoiser folder that `models.folders.load_denoiser` (and so
`python -m tdsm_edge.evaluate`) reads:

    python -m tdsm_edge.models.published --checkpoint work_dir/best \
        --out runs/ntu60_55_5/ru5/seed1/denoiser --config configs/ntu60_55_5.yaml

`--config` stores that run's data/text/schedule/eval sections (default: the paper's settings); its
text.num_tokens and encoder.feature_dim must equal the checkpoint's L and Dz.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdsm_edge.cli import exit_main

from ..config import DENOISER_PRESETS, DenoiserConfig
from ..errors import CheckpointError, ConfigError
from .denoiser import TDSMDenoiser
from .folders import denoiser_from_state, load_denoiser, save_denoiser

log = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"  # accelerate save_state, model 0, safe_serialization=True
PICKLE_NAME = "pytorch_model.bin"  # accelerate save_state, model 0, safe_serialization=False
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers (state_dict with unwrap=False)
PAPER_HEADS = 12
SHOW = 8  # how many names an error message lists per category
PUBLISHED_ONLY = "The file was written by a different model or a modified DiT; only the published architecture loads."


# ---------------------------------------------------------------- reading the file
def find_weights_file(path: str | Path) -> Path:
    """The weights file of a published checkpoint: `path` itself, or the model file inside an
    accelerate `save_state` folder (`model.safetensors` preferred over `pytorch_model.bin`)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise CheckpointError(
            f"published checkpoint {str(path)!r} {what}; pass the folder written by "
            f"accelerate's save_state (e.g. work_dir/best) or its {SAFETENSORS_NAME} / {PICKLE_NAME}."
        )
    for name in (SAFETENSORS_NAME, PICKLE_NAME):
        if (path / name).is_file():
            log.info("published weights: %s", path / name)
            return path / name
    sharded = sorted(p.name for p in path.iterdir() if p.name.startswith(("pytorch_model", "model.safetensors.index")))
    if sharded:
        raise CheckpointError(
            f"{str(path)!r} holds {sharded} but no {SAFETENSORS_NAME} or {PICKLE_NAME}: a DeepSpeed "
            "/ FSDP / sharded save. Consolidate it into one state dict first (DeepSpeed: "
            "zero_to_fp32.py; FSDP: accelerate merge-weights) and pass that file."
        )
    nested = sorted(str(p.parent) for name in (SAFETENSORS_NAME, PICKLE_NAME) for p in path.glob(f"*/{name}"))
    hint = f" Its subfolders hold checkpoints: pass one of {nested[:SHOW]}." if nested else ""
    raise CheckpointError(
        f"{str(path)!r} holds neither {SAFETENSORS_NAME} nor {PICKLE_NAME}, so it is not a folder "
        f"written by accelerate's save_state.{hint}"
    )


def read_state_dict(file: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, or of a pickled `.bin/.pt/.pth` state dict loaded with
    `torch.load(weights_only=True)` (never a full unpickle). Returns name -> CPU tensor as stored."""
    file = Path(file)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(file), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(
                f"cannot read {str(file)!r} as safetensors: {e}. The file is corrupt or truncated; copy it again."
            ) from e
    elif file.suffix in (".bin", ".pt", ".pth"):
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"cannot read {str(file)!r} with torch.load(weights_only=True): {e}. Only plain state dicts "
                "(tensors in a dict) are loaded from pickles, because unpickling anything else can run code. "
                "Re-save the model's state_dict() alone, or as safetensors."
            ) from e
    else:
        raise CheckpointError(
            f"{str(file)!r}: unknown weights format {file.suffix!r}; expected "
            f"{SAFETENSORS_NAME} or {PICKLE_NAME} as written by accelerate's save_state."
        )
    if not isinstance(state, dict):
        raise CheckpointError(f"{str(file)!r} holds a {type(state).__name__}, not a state dict (name -> tensor).")
    odd = sorted(k for k, v in state.items() if not torch.is_tensor(v))
    if odd:
        raise CheckpointError(
            f"{str(file)!r} is not a plain state dict: entries {odd[:SHOW]} are not tensors. "
            "Pass the model file of accelerate's save_state (model weights only)."
        )
    return state


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Drop leading `module.` / `_orig_mod.` (in any order, repeated) from every key.

    Returns (renamed state, the prefixes removed, e.g. ["module."]). Raises CheckpointError when two
    keys collapse onto one name.
    """
    out: dict[str, torch.Tensor] = {}
    removed: set[str] = set()
    for key, value in state.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            prefix = next(p for p in WRAPPER_PREFIXES if name.startswith(p))
            removed.add(prefix)
            name = name[len(prefix) :]
        if name in out:
            raise CheckpointError(
                f"keys {key!r} and another one both become {name!r} once wrapper prefixes "
                f"{list(WRAPPER_PREFIXES)} are removed; the file mixes two models."
            )
        out[name] = value
    return out, sorted(removed)


# ---------------------------------------------------------------- architecture from the tensors
def _shape(state: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        near = sorted(state)[:SHOW]
        raise CheckpointError(
            f"cannot infer the architecture: {key!r} is missing (keys start {near}). This is not "
            "a published TDSM DiT state dict."
        )
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{key} has shape {shape}; a published TDSM DiT has a {ndim}-d tensor there.")
    return shape


def infer_published_config(state: dict[str, torch.Tensor], num_heads: int = PAPER_HEADS) -> DenoiserConfig:
    """DenoiserConfig of a published DiT state dict (prefixes already stripped).

    Read from shapes: hidden D and Dz from `x_embedder.weight (D, Dz)`, Dc from
    `fl_embedder.weight (D, Dc)`, L from `fl_pos_embed (1, L, D)`, depth = 1 + the highest block
    index, MLP ratio from `blocks.0.mlp.fc1.weight (hidden, D)`. `num_heads` is given (not in any
    shape). `mask_text_padding=False`: the published model has no padding mask.
    """
    D, z_dim = _shape(state, "x_embedder.weight", 2)
    _, cond_dim = _shape(state, "fl_embedder.weight", 2)
    _, num_tokens, _ = _shape(state, "fl_pos_embed", 3)
    mlp_hidden, _ = _shape(state, "blocks.0.mlp.fc1.weight", 2)
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    mlp_ratio = mlp_hidden / D
    if int(D * mlp_ratio) != mlp_hidden:
        raise CheckpointError(
            f"blocks.0.mlp.fc1 has {mlp_hidden} outputs, which no MLP ratio of hidden {D} reproduces."
        )
    if num_heads < 1 or D % num_heads:
        raise ConfigError(
            f"hidden size {D} (from x_embedder.weight) is not divisible by {num_heads} heads; the head "
            "count is not stored in the checkpoint, so pass the value it was trained with (--heads; "
            f"paper: {PAPER_HEADS})."
        )
    dims = dict(hidden_size=D, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    # preset is only a label once every field is explicit; name the matching one when there is one
    preset = next((n for n, p in DENOISER_PRESETS.items() if p == dims), "paper")
    return DenoiserConfig(
        preset=preset, **dims, z_dim=z_dim, cond_dim=cond_dim, num_tokens=num_tokens, mask_text_padding=False
    )


def load_published_checkpoint(
    path: str | Path, num_heads: int = PAPER_HEADS, device: str | torch.device = "cpu"
) -> tuple[TDSMDenoiser, DenoiserConfig]:
    """Our denoiser (eval mode, float32) holding the weights of a published TDSM checkpoint.

    Args:
        path: an accelerate `save_state` folder, or its `model.safetensors` / `pytorch_model.bin`.
        num_heads: attention heads the checkpoint was trained with (not inferable; paper: 12).
        device: where to put the model.
    Returns:
        (model, its DenoiserConfig). `model(x (N, Dz), t (N,), fc (N, Dc), fl (N, L, Dc))` equals the
        published `DiT(x (N, 1, Dz), t, fc, fl)` (squeezed), with any mask ignored.
    """
    model, cfg, _ = _load(path, num_heads)
    return model.to(device), cfg


def _load(path: str | Path, num_heads: int) -> tuple[TDSMDenoiser, DenoiserConfig, dict[str, Any]]:
    file = find_weights_file(path)
    state, prefixes = strip_wrapper_prefixes(read_state_dict(file))
    cfg = infer_published_config(state, num_heads)
    model = denoiser_from_state(state, cfg, f"published checkpoint {str(file)!r}", fix=PUBLISHED_ONLY)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
    if dtypes != ["float32"]:
        log.info("%s stores %s tensors; loaded as float32", file, dtypes)
    info = {
        "file": str(file),
        "format": "safetensors" if file.suffix == ".safetensors" else "pickle (weights_only)",
        "stripped_prefixes": prefixes,
        "stored_dtypes": dtypes,
        "num_heads": num_heads,
        "num_heads_source": "argument (not stored in the checkpoint)",
    }
    log.info(
        "loaded %s: hidden %d, depth %d, heads %d, Dz %d, Dc %d, L %d%s",
        file,
        cfg.hidden_size,
        cfg.depth,
        cfg.num_heads,
        cfg.z_dim,
        cfg.cond_dim,
        cfg.num_tokens,
        f", stripped {prefixes}" if prefixes else "",
    )
    return model, cfg, info


# ---------------------------------------------------------------- conversion to a denoiser folder
def published_run_config(dcfg: DenoiserConfig, base: Any = None) -> Any:
    """The RunConfig stored with a converted checkpoint: `base` with this denoiser and
    `train.standardize_features=False` (the published code feeds raw features).

    Default base: the paper's settings (NTU-60 ru5, OpenCLIP ViT-H-14 label + description prompts,
    text.num_tokens = L, encoder.feature_dim = Dz). A given base must already agree with the
    checkpoint's L and Dz (its text features are what evaluation feeds), else ConfigError.
    """
    from ..config import DataConfig, RunConfig, TextConfig, TrainConfig, encoder_preset, validate

    if base is None:
        base = RunConfig(
            name="tdsm_published",
            data=DataConfig(dataset="ntu60", split="ru5"),
            encoder=encoder_preset("paper", feature_dim=dcfg.z_dim),
            text=TextConfig(
                encoder="openclip:ViT-H-14",
                prompt_sets=("label", "description"),
                num_tokens=dcfg.num_tokens,
                published_features=True,
            ),
            train=TrainConfig(standardize_features=False),
        )
    elif base.train.standardize_features:
        log.info("train.standardize_features set to False: the published code feeds raw features")
    cfg = replace(base, denoiser=dcfg, train=replace(base.train, standardize_features=False))
    try:
        validate(cfg)
    except ConfigError as e:
        raise ConfigError(
            f"{e} — the published checkpoint needs text.num_tokens: {dcfg.num_tokens} and "
            f"encoder.feature_dim: {dcfg.z_dim} in --config."
        ) from e
    return cfg


def _feature_stats(spec: str, z_dim: int):
    """FeatureStats for --feature-stats: "none" = identity, or a folder with feature_mean/std.npy."""
    from ..data.features import FeatureStats

    if spec == "none":
        return FeatureStats.identity(z_dim)
    folder = Path(spec)
    try:
        stats = FeatureStats(np.load(folder / "feature_mean.npy"), np.load(folder / "feature_std.npy"))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(
            f"--feature-stats {spec!r}: expected 'none' or a folder holding feature_mean.npy and feature_std.npy ({e})."
        ) from e
    if stats.mean.shape != (z_dim,) or stats.std.shape != (z_dim,) or not (stats.std > 0).all():
        raise ConfigError(
            f"--feature-stats {spec!r}: mean/std must be ({z_dim},) with std > 0, got "
            f"{stats.mean.shape} / {stats.std.shape}."
        )
    return stats


def convert_published_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    num_heads: int = PAPER_HEADS,
    feature_stats: str = "none",
    config: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a published checkpoint as a denoiser folder (`save_denoiser` layout) and verify it
    reloads bit-exactly with `load_denoiser`. Also writes `published_source.json` (provenance).

    `feature_stats="none"` records identity standardisation (mean 0, std 1), so evaluation feeds
    the raw features, as the published code does. `config`: a run yaml whose other sections to keep.
    Returns the folder.
    """
    from ..config import load_config
    from ..io import sha256_file, write_json

    out = Path(out)
    if (out / "model.safetensors").exists() and not overwrite:
        raise CheckpointError(
            f"{str(out)!r} already holds a denoiser; pass --overwrite to replace it or choose another --out."
        )
    model, dcfg, info = _load(checkpoint, num_heads)
    cfg = published_run_config(dcfg, load_config(config) if config else None)
    stats = _feature_stats(feature_stats, dcfg.z_dim)
    save_denoiser(out, model, cfg, seen_classes=[], stats=stats, history={})
    info.update(
        checkpoint=str(checkpoint),
        sha256=sha256_file(info["file"]),
        feature_stats="identity (raw features)" if feature_stats == "none" else str(feature_stats),
    )
    write_json(out / "published_source.json", info)
    back, _, back_stats, back_cfg = load_denoiser(out)
    same = back_cfg.denoiser == dcfg and all(
        torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values())
    )
    if not same or not np.array_equal(back_stats.std, stats.std) or not np.array_equal(back_stats.mean, stats.mean):
        raise CheckpointError(
            f"{str(out)!r} does not reload to the converted weights; the disk may be full. "
            "Delete the folder and convert again."
        )
    return out


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    from ..cli import HelpFormatter, add_log_level

    p = argparse.ArgumentParser(
        prog="python -m tdsm_edge.models.published",
        formatter_class=HelpFormatter,
        description="Convert a checkpoint of the published TDSM code (accelerate save_state) into a tdsm_edge "
        "denoiser folder that load_denoiser and python -m tdsm_edge.evaluate read.",
        epilog="For python -m tdsm_edge.evaluate, write the folder to runs/<name>/<split>/seed<k>/denoiser of a run "
        "whose config.yaml and text/class_text.safetensors hold text features made as the published code "
        "makes them (label + description, 35 tokens each, pad positions kept, 2048 channels).",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="accelerate save_state folder (e.g. work_dir/best) or its model.safetensors / pytorch_model.bin",
    )
    p.add_argument("--out", required=True, help="denoiser folder to write")
    p.add_argument(
        "--heads",
        type=int,
        default=PAPER_HEADS,
        help="attention heads the checkpoint was trained with (not stored in it)",
    )
    p.add_argument(
        "--feature-stats",
        default="none",
        help="'none': identity standardisation, evaluation feeds raw features as the published code "
        "does; or a folder holding feature_mean.npy / feature_std.npy",
    )
    p.add_argument(
        "--config",
        default=None,
        help="run yaml whose data/text/schedule/eval sections to store (default: the paper's settings)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing denoiser in --out")
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..cli import run_main, setup_logging

    setup_logging(args.log_level)

    def body() -> None:
        out = convert_published_checkpoint(
            args.checkpoint, args.out, args.heads, args.feature_stats, args.config, args.overwrite
        )
        print(f"wrote {out} (verified: reloads with load_denoiser to the same weights)")

    return run_main(
        body,
        logging.getLogger("tdsm_edge"),
        interrupted="interrupted; the denoiser folder is written only when complete: run the same command again",
    )


if __name__ == "__main__":
    exit_main(main())
