"""manifest.json of a new engine bundle: what `bundle_manifest` records of a build of export/bundle.py.

The schema and the checks on load live in tdsm_edge/runtime/manifest.py. numpy only: importing this
module does not import torch.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tdsm_edge.runtime.iospec import TABLES_GRAPH, TEXT_GRAPH, IOSpec
from tdsm_edge.runtime.manifest import FORMAT, SCHEMA_VERSION, TABLES_FILE
from tdsm_edge.text.base import global_norm_of

if TYPE_CHECKING:
    from .bundle import BundleRequest
    from .onnx_export import ExportRecord

__all__ = ["bundle_manifest", "skeleton_info"]


def bundle_manifest(
    r: BundleRequest,
    stage_dir: Path,
    *,
    noises,
    graphs: dict[str, ExportRecord],
    tables: list[str],
    text_runtime: dict | None,
    io: IOSpec,
    plans: list[dict],
    reference: dict | None,
) -> dict:
    """manifest.json of the bundle `r` asks for, as the steps wrote it into `stage_dir` (the schema and its
    checks: tdsm_edge/runtime/manifest.py). `verify` stays None until the verify step; `files` (every file's
    sha256) is added by `BundleStage.write_manifest`."""
    text, descriptions = r.class_text, r.class_descriptions
    return dict(
        schema_version=SCHEMA_VERSION,
        format=FORMAT,
        name=r.out_dir.name,
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        build=dict(command=r.command, versions=_versions()),
        source=r.source or {},
        classes=dict(
            names=r.names,
            indices=r.class_indices,
            **({"descriptions": list(descriptions)} if descriptions is not None else {}),
        ),
        text=dict(
            encoder_id=text.encoder_id,
            prompt_sets=list(text.prompt_sets),
            num_tokens=int(text.num_tokens),
            dim=int(text.dim),
            **({"runtime": _text_runtime_info(text, text_runtime)} if text_runtime else {}),
        ),
        skeleton=skeleton_info(r.run_config) if r.run_config is not None else {},
        model=_model_info(r.model.cfg, r.schedule, r.run_config),
        scoring=dict(
            timestep=int(r.timestep),
            num_noises=int(r.num_noises),
            noise_seed=int(r.noise_seed),
            noise_bank_sha256=_array_sha(noises.numpy()),
            prediction=r.schedule.prediction,
            feature_standardization=dict(
                folded_into="scorer", mean_sha256=_array_sha(r.stats.mean), std_sha256=_array_sha(r.stats.std)
            ),
        ),
        precision=r.precision,
        io=io.to_dict(),
        graphs={g: _graph_record(rec, stage_dir) for g, rec in graphs.items()},
        tables=dict(
            file=TABLES_FILE,
            dtype="float32",
            names=tables,
            note="cast at load to the dtypes of the scorer's IO spec (key_bias stays float32)",
        ),
        plans=plans,
        verify=None,
        **({"reference": reference} if reference else {}),
    )


def _text_runtime_info(class_text, text: dict) -> dict:
    """`manifest.text.runtime`: what the runtime needs to turn new class text into table rows."""
    Dt = class_text.dim // len(class_text.prompt_sets)
    return dict(
        text_graph=TEXT_GRAPH,
        tables_graph=TABLES_GRAPH,
        tables_precision="fp32",
        encoder_dim=Dt,
        max_length=int(text["max_length"]),
        vocab=text["vocab"],
        tokenizer=text["tokenizer"],
        prompt_inputs={"label": "class name", "description": "class description"},
        features="per prompt set, in prompt_sets order: tokenize ([CLS] … [SEP], truncated to max_length), run "
        f"text_graph (global: {'L2-normalised ' if global_norm_of(class_text.encoder_id) == 'l2' else ''}"
        "mean of the last hidden state over all real tokens; local: "
        "tokens 0..L-1 zeroed at padding; mask); concatenate the sets on channels, mask = OR; then "
        "tables_graph (fc, fl, mask) → float32 table rows, cast like tables.npz",
        reference="tdsm_edge.text.prompts.encode_classes with tdsm_edge.text.minilm.MiniLMEncoder, then "
        "tdsm_edge.models.class_tables.class_tables(..., precision='fp32')",
    )


def skeleton_info(run_config) -> dict:
    """The skeleton layout and the preprocessing a window needs before the encoder (from the run config)."""
    from tdsm_edge.skeleton.layout import load_layout
    from tdsm_edge.skeleton.preprocess import NUM_BODIES

    d = run_config.data
    layout, align_view, frames = "ntu25", False, d.frames
    meta = Path(d.skeletons) / "meta.json" if d.skeletons else None
    if meta is not None and meta.is_file():  # built NTU / PKU skeletons record their own preprocessing
        from tdsm_edge.io import read_json

        m = read_json(meta)
        layout, frames = m.get("layout", layout), int(m.get("frames", frames))
        align_view = bool(m.get("align_view", False))
    pre = dict(
        function="tdsm_edge.skeleton.preprocess.preprocess",
        frames=frames,
        num_bodies=NUM_BODIES,
        align_view=align_view,
        input="(T, V, 3) or (M, T, V, 3) camera coordinates; a joint at exactly 0 is missing",
        output="(3, T, V, M) float32: centred on the layout's centre joint of body 0 at its first "
        "tracked frame, the valid frame range linearly resampled to `frames`",
    )
    if d.features:
        pre = None  # the run started from published features: no encoder, no skeleton preprocessing
    return dict(layout=load_layout(layout).to_dict(), preprocess=pre, dataset=d.dataset)


def _graph_record(record, stage_dir: Path) -> dict:
    d = record.to_dict()
    for key in ("inputs", "outputs", "dynamic_axes"):  # the IO spec holds them
        d.pop(key, None)
    d["file"] = Path(record.path).relative_to(stage_dir).as_posix()
    d["files"] = [Path(f).relative_to(stage_dir).as_posix() for f in record.files]
    d.pop("path", None)
    return d


def _model_info(cfg, schedule, run_config) -> dict:
    conv = lambda c: asdict(c) if is_dataclass(c) else dict(vars(c))  # noqa: E731
    info = dict(denoiser=conv(cfg), schedule=conv(schedule.cfg))
    if run_config is not None:
        info.update(encoder=conv(run_config.encoder), run_name=run_config.name)
    return info


def _array_sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, np.float32).tobytes()).hexdigest()


def _versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("tdsm-edge", "torch", "numpy", "onnx", "onnxscript", "onnxruntime", "tensorrt"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
