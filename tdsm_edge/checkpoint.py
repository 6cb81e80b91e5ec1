"""Checkpoints: safetensors for tensors, json for everything else; never pickle.

A checkpoint is a folder:
    model.safetensors        the module's state dict (parameter names follow the published code)
    config.json              the model's metadata (json: its config as a dict, seen classes, history)
    train_state.safetensors  optional: optimizer tensors + RNG state, for exact resume
    train_state.json         optional: step, scheduler state, optimizer param groups

What the metadata holds for the denoiser and the encoder, and the one loader of each, are in
`tdsm_edge.models.folders`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .io import atomic_path, read_json, write_json


def save_module(folder: str | Path, state_dict: dict, meta: dict[str, Any]) -> None:
    """Write `state_dict` (name -> tensor) and `meta` (json-able) into `folder`, atomically per file."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / "config.json", meta)


def load_module(folder: str | Path) -> tuple[dict, dict[str, Any]]:
    """Read (state_dict, meta) written by `save_module`; CheckpointError names what is missing."""
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, meta = folder / "model.safetensors", folder / "config.json"
    for f in (weights, meta):
        if not f.is_file():
            raise CheckpointError(
                f"checkpoint file {str(f)!r} is missing; the folder {str(folder)!r} is not a complete "
                "checkpoint. Re-run training (python -m tdsm_edge.train) or point --run at a finished run."
            )
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(
            f"cannot read checkpoint {str(weights)!r}: {e}. The file is corrupt; delete it and re-run training."
        ) from e
    return state, _meta(meta.read_bytes(), str(meta))


def module_from_bytes(weights: bytes, meta: bytes, where: str) -> tuple[dict, dict[str, Any]]:
    """(state_dict, meta) from the two files of a `save_module` folder given as bytes (e.g. read and
    checked by an engine bundle); CheckpointError naming `where` when either is malformed."""
    from safetensors.torch import load

    try:
        state = load(weights)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {where}/model.safetensors: {e}") from e
    return state, _meta(meta, f"{where}/config.json")


def _meta(raw: bytes, where: str) -> dict[str, Any]:
    """A checkpoint's config.json as a dict; CheckpointError that names that file (not the weights)."""
    import json

    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(
            f"{where!r} is not valid json ({e}); the weights next to it may be fine: restore "
            "config.json from the run (or re-run the stage that wrote it)"
        ) from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where!r} is not a json object; restore config.json from the run")
    return meta


SHOW = 8  # how many names a mismatch error lists per category
MISMATCH_FIX = (
    "The checkpoint was written for another architecture or config; load it with the config saved next to it."
)


def load_into(model, state_dict: dict, where: str, fix: str = MISMATCH_FIX) -> None:
    """Strict load of `state_dict` (name -> tensor; another float dtype is copied into the model's) into `model`.

    CheckpointError "<where> does not match the model (2 missing: [...]; 1 unexpected: [...]; 1 shape mismatches:
    ['k: checkpoint (5, 4) vs model (6, 4)']). <fix>" lists the first `SHOW` names of each category at once.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if state_dict[k].shape != own[k].shape
    ]
    problems = [
        (f"{len(names)} {what}", names)
        for what, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes))
        if names
    ]
    if problems:
        listed = "; ".join(f"{head}: {names[:SHOW]}{' …' if len(names) > SHOW else ''}" for head, names in problems)
        raise CheckpointError(f"{where} does not match the model ({listed})" + (f". {fix}" if fix else ""))
    model.load_state_dict(state_dict, strict=True)


# ------------------------------------------------------------------ training state (resume)
def save_train_state(folder: str | Path, optimizer, scheduler, step: int, generator, extra: dict | None = None) -> None:
    """Flatten optimizer state into safetensors + json so training resumes exactly."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng_state": generator.get_state()}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, val in pstate.items():
            if torch.is_tensor(val):
                tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    with atomic_path(folder / "train_state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_json(
        folder / "train_state.json",
        {
            "step": step,
            "param_groups": sd["param_groups"],
            "scalars": scalars,
            "scheduler": scheduler.state_dict(),
            **(extra or {}),
        },
    )


def load_train_state(folder: str | Path, optimizer, scheduler, generator) -> dict[str, Any]:
    """Restore what `save_train_state` wrote; returns the json record (with "step")."""
    from safetensors.torch import load_file

    folder = Path(folder)
    files = [folder / "train_state.safetensors", folder / "train_state.json"]
    for f in files:
        if not f.is_file():
            raise CheckpointError(
                f"cannot resume: {str(f)!r} is missing. Start a fresh run (without --resume) "
                "or delete the incomplete checkpoint folder."
            )
    tensors, record = load_file(str(files[0])), read_json(files[1])
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = val
    for pid, sc in record.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    optimizer.load_state_dict({"state": state, "param_groups": record["param_groups"]})
    scheduler.load_state_dict(record["scheduler"])
    generator.set_state(tensors["rng_state"])
    return record


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete `step_XXXXXXX` folder under root, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [
        p for p in root.glob("step_*") if (p / "train_state.json").is_file() and (p / "model.safetensors").is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("_")[1])) if done else None


def prune_checkpoints(root: str | Path, keep: int = 2) -> None:
    """Delete all but the newest `keep` step folders."""
    steps = sorted(Path(root).glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    for p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
