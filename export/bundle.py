"""Writing an engine bundle: graphs, class tables and manifest.json, staged and committed atomically.

`write_bundle` exports a trained denoiser's folded scorer (and the skeleton encoder when given) into
`out_dir`, with the class tables of the chosen classes and a manifest recording everything the
bundle depends on (see manifest.py for the layout and the checks on load). Files are written into a
hidden staging folder next to `out_dir` and renamed into place only after the manifest is written
and the optional `check` (verification) passed: a failed build never leaves a half-written bundle.

Reading a bundle (`load_manifest`, `load_tables`, `check_plan_compat`) lives in
`tdsm_edge.runtime.manifest`; importing this module does not import torch (write_bundle imports it
when called).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import platform
import shlex
import shutil
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tdsm_edge.errors import BundleError, ConfigError, ExportError
from tdsm_edge.runtime.iospec import (BATCH, CLASSES, TABLES_GRAPH, TEXT_GRAPH, TOKENS, AxisRange, GraphIO, IOSpec,
                                      scorer_io, tables_io, text_io)
from tdsm_edge.runtime.manifest import FORMAT, SCHEMA_VERSION, TABLES_FILE, Manifest, load_manifest
from tdsm_edge.text.base import global_norm_of

from .bundle_stage import BundleStage

__all__ = ["write_bundle", "skeleton_info"]

log = logging.getLogger(__name__)

TEXT_SIDE = (TABLES_GRAPH, TEXT_GRAPH)  # graphs for add_classes: always ONNX Runtime, never a TensorRT plan
MINILM_ID_PREFIX = "minilm:"           # TextEncoder.encoder_id of tdsm_edge.text.minilm.MiniLMEncoder
# plan_builder(stage dir, {graph: .onnx path}, io spec) -> plan records; check(staged manifest) -> verification report
PlanBuilder = Callable[[Path, dict, IOSpec], list]
Check = Callable[[Manifest], dict]


ADDED_CLASSES = 16  # classes add_classes may add beyond the bundle's within a TensorRT plan's profile


def write_bundle(out_dir: str | Path, model, schedule, stats, class_text, *, timestep: int, num_noises: int,
                 noise_seed: int = 0, precision: str = "fp32", batch: AxisRange = AxisRange(1, 4, 8),
                 encoder_dir: str | Path | None = None, run_config=None, source: dict | None = None,
                 class_indices: list[int] | None = None, build_command: str | None = None,
                 plan_builder: PlanBuilder | None = None, check: Check | None = None,
                 reference_weights: bool = True, text_encoder: bool = False,
                 class_descriptions: Sequence[str] | None = None, sign_key: str | Path | None = None) -> Manifest:
    """Export a trained denoiser as an engine bundle in `out_dir` (atomically; see `BundleStage`).

    Args:
        model, schedule, stats: the denoiser, its DDPMSchedule and FeatureStats (`load_denoiser`).
        class_text: a ClassText of the K bundle classes, rows in score order.
        timestep, num_noises, noise_seed: t, J and the seed of the fixed noise bank.
        precision: "fp32" | "fp16", the scorer (and encoder) graph precision.
        batch: the batch axis range (min/opt/max); K ranges over 1..len(class_text).
        encoder_dir: a run's encoder folder: the encoder graph is added (frames from `run_config`).
        run_config: the run's RunConfig (recorded; gives the skeleton preprocessing and encoder).
        source: where the model came from (run folder, split, seed), recorded as is.
        class_indices: the classes' global indices in the run (recorded).
        build_command: the exact command that rebuilds this bundle (named in every load error).
        plan_builder: builds TensorRT plans into the stage from the graphs' ONNX files; returns their
            records (TensorRT version, GPU, compute capability … as `tensorrt_build.build_plan` gives them).
        check: verification on the staged bundle (its Manifest); returns a report (stored as manifest["verify"]; an
            "open_set" entry in it moves to manifest["open_set"]); raising aborts the build.
        reference_weights: also store the PyTorch weights (denoiser, noise bank, feature statistics,
            encoder) under `reference/`, for the runtime's "torch" backend.
        text_encoder: also ship the text side, so the runtime can add classes from their text
            (`ZeroShotRecognizer.add_classes`): the tables graph `tables_fp32.onnx` (class text → class
            tables, always fp32 like tables.npz), the MiniLM text graph `text_encoder.onnx` and its
            `vocab.txt`; `manifest.text.runtime` records what reproduces `encode_classes`. Needs a
            MiniLM `class_text` (ConfigError otherwise).
        class_descriptions: the K classes' descriptions (the "description" prompt set), recorded in
            `manifest.classes.descriptions` (the build's text check re-encodes them).
        sign_key: an Ed25519 private key file (PEM): sign the bundle digest into manifest.sig.
    Returns:
        The committed bundle's Manifest.
    """
    import torch

    from tdsm_edge.scoring import noise_bank

    from tdsm_edge.models.folded import FoldedScorer, class_tables
    from .onnx_export import export_scorer, export_tables
    from .text_export import export_bundle_text

    out_dir = Path(out_dir)
    if encoder_dir is not None and run_config is None:
        raise ConfigError("write_bundle: an encoder graph needs run_config (its window length is data.frames)")
    cfg = model.cfg
    names = list(class_text.names)
    if class_descriptions is not None and len(class_descriptions) != len(names):
        raise ConfigError(f"write_bundle: {len(class_descriptions)} class descriptions for {len(names)} classes")
    if text_encoder:
        check_text_side(class_text)
        if class_descriptions is None and "description" in class_text.prompt_sets:
            raise ConfigError("write_bundle: the text side needs class_descriptions (the \"description\" prompt set "
                              "of the bundle's classes), recorded for the runtime and re-encoded by the build's check")
    command = build_command or default_build_command(out_dir, source, precision, batch, text_encoder)
    noises = noise_bank(num_noises, cfg.z_dim, noise_seed)  # (J, Dz)
    with BundleStage(out_dir) as stage:
        log.info("[1/5] scorer graph (%s, %d classes, J=%d, t=%d)", precision, len(names), num_noises, timestep)
        model = model.cpu().eval()
        scorer = FoldedScorer(model, schedule, noises, timestep, stats, precision).eval()
        graphs = {"scorer": export_scorer(scorer, stage.path(f"scorer_{precision}.onnx"), precision)}
        log.info("[2/5] class tables (float32, %d rows)", len(names))
        fc, fl, mask = (torch.from_numpy(np.ascontiguousarray(a)) for a in
                        (class_text.global_.astype(np.float32), class_text.local.astype(np.float32), class_text.mask))
        tables = {n: t.numpy() for n, t in class_tables(model, fc, fl, mask, timestep, "fp32").items()}
        np.savez(stage.path(TABLES_FILE), **tables)
        if encoder_dir is not None:
            log.info("[3/5] encoder graph (%s)", precision)
            from .encoder_export import export_encoder

            graphs["encoder"] = export_encoder(encoder_dir, stage.path(f"encoder_{precision}.onnx"),
                                               run_config.data.frames, precision)
        else:
            log.info("[3/5] encoder graph: none (no encoder given)")
        text_runtime = None
        if text_encoder:
            log.info("[3/5] text side for add_classes: tables graph (fp32) + MiniLM text graph")
            graphs[TABLES_GRAPH] = export_tables(model, stage.path("tables_fp32.onnx"), timestep, "fp32")
            graphs[TEXT_GRAPH], text_runtime = export_bundle_text(stage.dir, class_text.num_tokens,
                                                                  global_norm_of(class_text.encoder_id))
        reference = _write_reference(stage, model, stats, noises, encoder_dir) if reference_weights else None
        specs = {g: GraphIO.from_specs(r.inputs, r.outputs) for g, r in graphs.items() if g not in TEXT_SIDE}
        # room for classes added at run time (add_classes): TensorRT profiles stop at the axis max
        spare = ADDED_CLASSES if text_encoder else 0
        axes = {BATCH: batch, CLASSES: AxisRange(1, len(names), len(names) + spare)}
        if text_runtime is not None:
            L = int(class_text.num_tokens)
            Dt = class_text.dim // len(class_text.prompt_sets)
            specs.update(_checked_spec(graphs[TABLES_GRAPH], tables_io(cfg)))
            specs.update(_checked_spec(graphs[TEXT_GRAPH], text_io(L, Dt)))
            axes[TOKENS] = AxisRange(L, L, max(L, int(text_runtime["max_length"])))
        io = IOSpec({"scorer": scorer_io(cfg, precision), **specs}, axes)  # export_scorer checked the scorer
        plans = []
        if plan_builder is not None:
            log.info("[4/5] TensorRT plans")
            onnx = {g: Path(r.path) for g, r in graphs.items() if g not in TEXT_SIDE}  # the text side runs on ORT
            plans = [_relative(p, stage.dir) for p in plan_builder(stage.dir, onnx, io)]
            _check_profiles(plans, io)
        else:
            log.info("[4/5] TensorRT plans: none")
        data = dict(
            schema_version=SCHEMA_VERSION, format=FORMAT, name=out_dir.name,
            created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            build=dict(command=command, versions=_versions()), source=source or {},
            classes=dict(names=names, indices=class_indices,
                         **({"descriptions": list(class_descriptions)} if class_descriptions is not None else {})),
            text=dict(encoder_id=class_text.encoder_id, prompt_sets=list(class_text.prompt_sets),
                      num_tokens=int(class_text.num_tokens), dim=int(class_text.dim),
                      **({"runtime": _text_runtime_info(class_text, text_runtime)} if text_runtime else {})),
            skeleton=skeleton_info(run_config) if run_config is not None else {},
            model=_model_info(cfg, schedule, run_config),
            scoring=dict(timestep=int(timestep), num_noises=int(num_noises), noise_seed=int(noise_seed),
                         noise_bank_sha256=_array_sha(noises.numpy()), prediction=schedule.prediction,
                         feature_standardization=dict(folded_into="scorer", mean_sha256=_array_sha(stats.mean),
                                                      std_sha256=_array_sha(stats.std))),
            precision=precision, io=io.to_dict(),
            graphs={g: _graph_record(r, stage.dir) for g, r in graphs.items()},
            tables=dict(file=TABLES_FILE, dtype="float32", names=list(tables),
                        note="cast at load to the dtypes of the scorer's IO spec (key_bias stays float32)"),
            plans=plans, verify=None, **({"reference": reference} if reference else {}))
        manifest = stage.write_manifest(data)
        if check is not None:
            log.info("[5/5] verify")
            report = dict(check(manifest))
            open_set = report.pop("open_set", None)
            data = {**manifest.data, "verify": report, **({"open_set": open_set} if open_set else {})}
            data.pop("files")
            manifest = stage.write_manifest(data)
        else:
            log.info("[5/5] verify: skipped")
        if sign_key is not None:
            from .signing import sign_folder

            sign_folder(stage.dir, manifest.digest, sign_key)
        stage.commit()
    log.info("engine bundle written to %s", out_dir)
    return load_manifest(out_dir)


def check_text_side(class_text) -> None:
    """ConfigError unless the runtime can reproduce `class_text` from text: MiniLM features, known prompt sets."""
    from tdsm_edge.text.prompts import PROMPT_SETS

    if not str(class_text.encoder_id).startswith(MINILM_ID_PREFIX):
        raise ConfigError(f"the text side (--text-encoder) ships the MiniLM text graph, but this run's classes were "
                          f"encoded with {class_text.encoder_id!r}; build with --no-text-encoder (classes can then "
                          "only be chosen at build time: --classes)")
    unknown = [s for s in class_text.prompt_sets if s not in PROMPT_SETS]
    if unknown or class_text.dim % len(class_text.prompt_sets):
        raise ConfigError(f"the text side cannot reproduce prompt sets {list(class_text.prompt_sets)} of "
                          f"{class_text.dim} channels (known prompt sets: {list(PROMPT_SETS)}); build with --no-text-encoder")


def _checked_spec(record, spec: GraphIO) -> dict:
    """{graph: spec} after checking the exported graph against the spec built from the config."""
    problems = spec.mismatches(record.inputs, record.outputs)
    if problems:
        raise ExportError(f"{record.path}: the exported {record.graph} graph breaks the IO spec: "
                          + "; ".join(problems))
    return {record.graph: spec}


def _text_runtime_info(class_text, text: dict) -> dict:
    """`manifest.text.runtime`: what the runtime needs to turn new class text into table rows."""
    Dt = class_text.dim // len(class_text.prompt_sets)
    return dict(
        text_graph=TEXT_GRAPH, tables_graph=TABLES_GRAPH, tables_precision="fp32", encoder_dim=Dt,
        max_length=int(text["max_length"]), vocab=text["vocab"], tokenizer=text["tokenizer"],
        prompt_inputs={"label": "class name", "description": "class description"},
        features="per prompt set, in prompt_sets order: tokenize ([CLS] … [SEP], truncated to max_length), run "
                 f"text_graph (global: {'L2-normalised ' if global_norm_of(class_text.encoder_id) == 'l2' else ''}"
                 "mean of the last hidden state over all real tokens; local: "
                 "tokens 0..L-1 zeroed at padding; mask); concatenate the sets on channels, mask = OR; then "
                 "tables_graph (fc, fl, mask) → float32 table rows, cast like tables.npz",
        reference="tdsm_edge.text.prompts.encode_classes with tdsm_edge.text.minilm.MiniLMEncoder, then "
                  "tdsm_edge.models.class_tables.class_tables(..., precision='fp32')")


def _write_reference(stage: BundleStage, model, stats, noises, encoder_dir) -> dict:
    """The PyTorch weights under `reference/` (safetensors + npy): what the runtime's torch backend loads."""
    from tdsm_edge.checkpoint import save_module

    save_module(stage.path("reference/denoiser"), model.state_dict(), {"kind": "tdsm_denoiser_reference",
                                                                       "denoiser": asdict(model.cfg)})
    for name, a in (("feature_mean", stats.mean), ("feature_std", stats.std), ("noise_bank", noises.numpy())):
        np.save(stage.path(f"reference/{name}.npy"), np.ascontiguousarray(a, np.float32))
    out = dict(denoiser="reference/denoiser", feature_mean="reference/feature_mean.npy",
               feature_std="reference/feature_std.npy", noise_bank="reference/noise_bank.npy", encoder=None)
    if encoder_dir is not None:
        dst = stage.path("reference/encoder")
        dst.mkdir(parents=True)
        for f in ("model.safetensors", "config.json"):
            shutil.copyfile(Path(encoder_dir) / f, dst / f)
        out["encoder"] = "reference/encoder"
    return out


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
    pre = dict(function="tdsm_edge.skeleton.preprocess.preprocess", frames=frames, num_bodies=NUM_BODIES,
               align_view=align_view, input="(T, V, 3) or (M, T, V, 3) camera coordinates; a joint at exactly 0 is "
               "missing", output="(3, T, V, M) float32: centred on the layout's centre joint of body 0 at its first "
               "tracked frame, the valid frame range linearly resampled to `frames`")
    if d.features:
        pre = None  # the run started from published features: no encoder, no skeleton preprocessing
    return dict(layout=load_layout(layout).to_dict(), preprocess=pre, dataset=d.dataset)


def default_build_command(out_dir: Path, source: dict | None, precision: str, batch: AxisRange,
                          text_encoder: bool = False) -> str:
    """A build_engine command line reproducing a library-built bundle (as far as `source` tells)."""
    argv = ["python", "-m", "export.build_engine"]
    if source and source.get("seed_dir"):
        argv += ["--run", str(source["seed_dir"])]
    argv += ["--out", str(out_dir), "--precision", precision, "--batch", str(batch.max),
             "--dynamic" if not batch.fixed else "--no-dynamic",
             "--text-encoder" if text_encoder else "--no-text-encoder"]
    return shlex.join(argv)


def _graph_record(record, stage_dir: Path) -> dict:
    d = record.to_dict()
    for key in ("inputs", "outputs", "dynamic_axes"):  # the IO spec holds them
        d.pop(key, None)
    d["file"] = Path(record.path).relative_to(stage_dir).as_posix()
    d["files"] = [Path(f).relative_to(stage_dir).as_posix() for f in record.files]
    d.pop("path", None)
    return d


def _relative(plan: dict, stage_dir: Path) -> dict:
    """A plan record with `file` relative to the bundle (build_plan may return an absolute path)."""
    plan = dict(plan)
    f = Path(plan.pop("path", None) or plan["file"])
    if f.is_absolute():
        try:
            f = f.resolve().relative_to(stage_dir.resolve())
        except ValueError as e:
            raise BundleError(f"the plan {f} was written outside the bundle being built ({stage_dir})") from e
    plan["file"] = f.as_posix()
    return plan


def _check_profiles(plans: list[dict], io: IOSpec) -> None:
    """A plan's optimisation profile must be the one the IO spec gives its graph (when the record has one)."""
    for plan in plans:
        graph, got = plan.get("graph"), plan.get("profile")
        if got is None or graph not in io.graphs:
            continue
        want = {n: dict(min=list(lo), opt=list(opt), max=list(hi)) for n, (lo, opt, hi) in io.profile(graph).items()}
        if got != want:
            raise BundleError(f"the TensorRT plan {plan.get('file')} was built with the profile {got}, but the "
                              f"bundle's IO spec gives {want}; build_plan and tdsm_edge/runtime/iospec.py disagree")


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
