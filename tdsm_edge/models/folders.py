"""The denoiser and encoder folders: what training writes and every later stage loads, and the one loader of each.

    <run>/<split>/seed<k>/denoiser/     save_denoiser → load_denoiser
        model.safetensors               TDSMDenoiser state dict (the published parameter names)
        config.json                     {"kind": "tdsm_denoiser", "config": RunConfig as a dict,
                                         "seen_classes": [S ints], "history": {...}, "seconds": float}
        feature_mean.npy, feature_std.npy   (Dz,) float32: standardisation of the raw skeleton features
        published_source.json           only in a converted published checkpoint: its provenance
    <run>/<split>/seed<k>/encoder/      save_encoder → load_encoder
        model.safetensors               ShiftGCN state dict (classifier head over the S seen classes)
        config.json                     {"kind": "shift_gcn", "encoder": EncoderConfig as a dict,
                                         "seen_classes": [S ints], "num_joints": V, "val_accuracy": float,
                                         "history": {...}, "seconds": float}
    <bundle>/reference/denoiser/        save_reference_denoiser (export) → the torch backend
        model.safetensors               the same state dict
        config.json                     {"kind": "tdsm_denoiser_reference", "denoiser": DenoiserConfig as a dict}
                                        (informative: the backend builds the model from the manifest's
                                        sealed model section; the run config and statistics live there too)
    <bundle>/reference/encoder/         the encoder folder above, copied as is

A model is built from its (state dict, config) by `denoiser_from_state` / `encoder_from_state`: the
folder loaders here read the files; the torch backend reads the two files of a bundle's
`reference/` folders through its hash-checked manifest and calls the same builders; the published converter
builds its model with `denoiser_from_state` too. The files themselves are written and read by
`tdsm_edge.checkpoint` (safetensors + json, never pickle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import MISMATCH_FIX, load_into, load_module, save_module
from ..config import DenoiserConfig, EncoderConfig, RunConfig, config_from_dict, section_from_dict, to_dict
from ..data.features import FeatureStats
from ..errors import CheckpointError
from ..io import save_npy
from .denoiser import TDSMDenoiser
from .schedule import DDPMSchedule
from .shift_gcn import ShiftGCN


# ---------------------------------------------------------------- denoiser
def denoiser_from_state(state: dict, cfg: DenoiserConfig, where: str, fix: str = MISMATCH_FIX) -> TDSMDenoiser:
    """A TDSMDenoiser of `cfg` holding `state` (name -> tensor, float32 or another float dtype), in eval mode
    on the CPU. CheckpointError "<where> does not match the model (...). <fix>" when names or shapes differ."""
    model = TDSMDenoiser(cfg)
    load_into(model, state, where, fix)
    return model.eval()


def save_reference_denoiser(folder: str | Path, model: TDSMDenoiser) -> None:
    """Write a bundle's `reference/denoiser` folder (see the module docstring): the weights and the denoiser
    config only (the rest of the run stays in the bundle's manifest)."""
    save_module(folder, model.state_dict(), {"kind": "tdsm_denoiser_reference", "denoiser": to_dict(model.cfg)})


def save_denoiser(
    folder: str | Path,
    model: TDSMDenoiser,
    cfg: RunConfig,
    seen_classes,
    stats: FeatureStats,
    history: dict,
    seconds: float = 0.0,
) -> None:
    """Write a denoiser folder (see the module docstring): the weights, the run config, the (S,) seen classes,
    the training history and the (Dz,) feature standardisation statistics."""
    folder = Path(folder)
    save_npy(folder / "feature_mean.npy", stats.mean)
    save_npy(folder / "feature_std.npy", stats.std)
    save_module(
        folder,
        model.state_dict(),
        {
            "kind": "tdsm_denoiser",
            "config": to_dict(cfg),
            "seen_classes": np.asarray(seen_classes).tolist(),
            "history": history,
            "seconds": seconds,
        },
    )


def load_denoiser(
    folder: str | Path, device: str = "cpu"
) -> tuple[TDSMDenoiser, DDPMSchedule, FeatureStats, RunConfig]:
    """(model in eval mode on `device`, its DDPMSchedule, FeatureStats over Dz, the run's RunConfig) from a
    folder written by `save_denoiser`; CheckpointError / ConfigError naming the file at fault."""
    folder = Path(folder)
    state, meta = load_module(folder)
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(
            f"{folder}/config.json has no run config (\"config\"); it was not written by "
            "save_denoiser: restore it from the run, or re-run training"
        )
    cfg = config_from_dict(meta["config"], where=f"{folder}/config.json")
    model = denoiser_from_state(state, cfg.denoiser, f"denoiser checkpoint {folder}")
    try:
        stats = FeatureStats(np.load(folder / "feature_mean.npy"), np.load(folder / "feature_std.npy"))
    except FileNotFoundError as e:
        raise CheckpointError(f"{folder}: feature_mean.npy / feature_std.npy missing; re-run training.") from e
    return model.to(device), DDPMSchedule(cfg.schedule), stats, cfg


# ---------------------------------------------------------------- encoder
def encoder_from_state(
    state: dict, meta: dict[str, Any], where: str, device: str = "cpu", fix: str = MISMATCH_FIX
) -> ShiftGCN:
    """The ShiftGCN of an encoder folder's (state dict, config.json meta), in eval mode on `device`; its
    EncoderConfig is typed and range-checked, its head has len(meta["seen_classes"]) outputs."""
    try:
        ecfg = section_from_dict(EncoderConfig, meta["encoder"], f"{where} config.json: encoder")
        num_classes, num_joints = len(meta["seen_classes"]), int(meta.get("num_joints", 25))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{where}: config.json is malformed ({type(e).__name__}: {e}); restore it from the run "
            "that trained the encoder"
        ) from e
    model = ShiftGCN(ecfg, num_classes=num_classes, num_joints=num_joints)
    load_into(model, state, where, fix)
    return model.to(device).eval()


def save_encoder(folder: str | Path, result: Any, cfg: EncoderConfig, num_joints: int = 25) -> None:
    """Write an encoder folder (see the module docstring). `result`: the trained encoder as training returns it
    (`training.encoder_trainer.EncoderResult`: model, seen_classes (S,), history, val_accuracy, seconds)."""
    save_module(
        folder,
        result.model.state_dict(),
        {
            "kind": "shift_gcn",
            "encoder": to_dict(cfg),
            "seen_classes": np.asarray(result.seen_classes).tolist(),
            "num_joints": num_joints,
            "val_accuracy": result.val_accuracy,
            "history": result.history,
            "seconds": result.seconds,
        },
    )


def load_encoder(folder: str | Path, device: str = "cpu") -> tuple[ShiftGCN, dict[str, Any]]:
    """(ShiftGCN in eval mode on `device`, the folder's config.json meta) from a folder written by `save_encoder`.

    meta holds the encoder config (`meta["encoder"]`), `seen_classes`, `num_joints`, and the training history.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"encoder folder {str(folder)!r} does not exist; it is written by training "
            "as runs/<name>/<split>/seed<k>/encoder (python -m tdsm_edge.train)."
        )
    state, meta = load_module(folder)
    return encoder_from_state(state, meta, f"encoder checkpoint {folder}", device), meta
