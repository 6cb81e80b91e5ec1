"""Writing an engine bundle: graphs, class tables and manifest.json, staged and committed atomically.

`write_bundle(BundleRequest(out_dir, model, schedule, stats, class_text, timestep=…, num_noises=…))`
exports a trained denoiser's folded scorer (and the skeleton encoder when given) into `out_dir`, with
the class tables of the chosen classes and a manifest recording everything the bundle depends on
(`bundle_manifest`, export/bundle_manifest.py; its schema and the checks on load: tdsm_edge/runtime/manifest.py).
The request is checked when it is made; `write_bundle` then runs one named step per part of the bundle.
Files are written into a hidden staging folder next to `out_dir` and renamed into place only after the
manifest is written and the optional `check` (verification) passed: a failed build never leaves a
half-written bundle.

Reading a bundle (`load_manifest`, `load_tables`, `check_plan_compat`) lives in
`tdsm_edge.runtime.manifest`; importing this module does not import torch (write_bundle imports it
when called).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tdsm_edge.errors import BundleError, ConfigError, ExportError
from tdsm_edge.runtime import rebuild
from tdsm_edge.runtime.iospec import (
    BATCH,
    CLASSES,
    TABLES_GRAPH,
    TEXT_GRAPH,
    TOKENS,
    AxisRange,
    GraphIO,
    IOSpec,
    scorer_io,
    tables_io,
    text_io,
)
from tdsm_edge.runtime.manifest import TABLES_FILE, Manifest, load_manifest
from tdsm_edge.text.base import global_norm_of

from .bundle_manifest import bundle_manifest
from .bundle_stage import BundleStage

if TYPE_CHECKING:
    from .onnx_export import ExportRecord

__all__ = ["BundleRequest", "write_bundle"]

log = logging.getLogger(__name__)

TEXT_SIDE = (TABLES_GRAPH, TEXT_GRAPH)  # graphs for add_classes: always ONNX Runtime, never a TensorRT plan
MINILM_ID_PREFIX = "minilm:"  # TextEncoder.encoder_id of tdsm_edge.text.minilm.MiniLMEncoder
# plan_builder(stage dir, {graph: .onnx path}, io spec) -> plan records; check(staged manifest) -> verification report
PlanBuilder = Callable[[Path, dict, IOSpec], list]
Check = Callable[[Manifest], dict]


ADDED_CLASSES = 16  # classes add_classes may add beyond the bundle's within a TensorRT plan's profile


@dataclass(frozen=True, eq=False)  # eq=False: it holds a model and arrays, compared by identity
class BundleRequest:
    """Everything an engine bundle is built from: a trained denoiser, its classes and the build options.

    Checked once, here, before anything is written (ConfigError). `plan_builder(stage dir, {graph: .onnx
    path}, io spec)` builds TensorRT plans into the stage and returns their records (TensorRT version, GPU,
    compute capability … as `tensorrt_build.build_plan` gives them). `check(staged manifest)` verifies the
    staged bundle and returns a report, stored as manifest["verify"] (an "open_set" entry in it moves to
    manifest["open_set"]); raising aborts the build. `text_encoder` ships the text side, so the runtime can
    add classes from their text (`ZeroShotRecognizer.add_classes`): the tables graph `tables_fp32.onnx`
    (class text → class tables, always fp32 like tables.npz), the MiniLM text graph `text_encoder.onnx` and
    its `vocab.txt`; `manifest.text.runtime` records what reproduces `encode_classes`.
    """

    out_dir: str | Path  # the bundle folder (a Path once constructed)
    model: Any  # the trained denoiser (`load_denoiser`), exported on the CPU in eval mode
    schedule: Any  # its DDPMSchedule
    stats: Any  # its FeatureStats, folded into the scorer
    class_text: Any  # ClassText of the K bundle classes, rows in score order
    _: KW_ONLY
    timestep: int  # t of the scorer's one denoising step
    num_noises: int  # J, the size of the fixed noise bank
    noise_seed: int = 0  # the noise bank's seed
    precision: str = "fp32"  # "fp32" | "fp16": the scorer (and encoder) graph precision
    batch: AxisRange = AxisRange(1, 4, 8)  # the batch axis (min/opt/max); K ranges over 1..len(class_text)
    encoder_dir: str | Path | None = None  # a run's encoder folder: adds the encoder graph (frames from run_config)
    run_config: Any = None  # the run's RunConfig: recorded; gives the skeleton preprocessing
    source: dict | None = None  # where the model came from (run folder, split, seed), recorded as is
    class_indices: list[int] | None = None  # the classes' global indices in the run (recorded)
    build_command: str | None = None  # the command that rebuilds it (named in load errors); None: from source
    plan_builder: PlanBuilder | None = None  # TensorRT plans from the graphs' ONNX files (see above); None: no plans
    check: Check | None = None  # verification of the staged bundle (see above); None: not verified
    reference_weights: bool = True  # also store the PyTorch weights under reference/ (the "torch" backend)
    text_encoder: bool = False  # also ship the text side (see above); needs a MiniLM class_text
    class_descriptions: Sequence[str] | None = None  # the K classes' descriptions (recorded; the check re-encodes them)
    sign_key: str | Path | None = None  # an Ed25519 private key file (PEM): sign the bundle digest into manifest.sig

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.encoder_dir is not None and self.run_config is None:
            raise ConfigError("write_bundle: an encoder graph needs run_config (its window length is data.frames)")
        K, descriptions = len(self.names), self.class_descriptions
        if descriptions is not None and len(descriptions) != K:
            raise ConfigError(f"write_bundle: {len(descriptions)} class descriptions for {K} classes")
        if self.text_encoder:
            check_text_side(self.class_text)
            if descriptions is None and "description" in self.class_text.prompt_sets:
                raise ConfigError(
                    "write_bundle: the text side needs class_descriptions (the \"description\" prompt "
                    "set of the bundle's classes), recorded for the runtime and re-encoded by the "
                    "build's check"
                )
        self.command  # noqa: B018  (made now so a bad `source` fails before any work)

    @property
    def command(self) -> str:
        """The command that rebuilds the bundle: `build_command`, or for a library-built bundle the one
        made from what `source` tells (made when asked, so `dataclasses.replace` never keeps a stale one)."""
        if self.build_command:
            return self.build_command
        return default_build_command(self.out_dir, self.source, self.precision, self.batch, self.text_encoder)

    @property
    def names(self) -> list[str]:
        """The K class names, in score order."""
        return list(self.class_text.names)


def write_bundle(request: BundleRequest) -> Manifest:
    """Build the engine bundle `request` describes in `request.out_dir`, atomically (see `BundleStage`).

    The steps, in order, each writing into the stage: the scorer graph, the class tables, the encoder
    graph and the text side (when asked for), the reference weights, the TensorRT plans (with a plan
    builder), the manifest, its verification (with a check) and signature (with a key). The stage is
    committed only after all of them. Returns the committed bundle's Manifest.
    """
    from tdsm_edge.scoring import noise_bank

    r = request
    noises = noise_bank(r.num_noises, r.model.cfg.z_dim, r.noise_seed)  # (J, Dz)
    with BundleStage(r.out_dir) as stage:
        r.model.cpu().eval()  # in place (a Module returns itself): every step exports the CPU model in eval mode
        graphs = {"scorer": _export_scorer(stage, r, noises)}
        tables = _write_tables(stage, r)
        graphs.update(_export_encoder(stage, r))
        text_graphs, text_runtime = _export_text_side(stage, r)
        graphs.update(text_graphs)
        reference = _write_reference(stage, r, noises) if r.reference_weights else None
        io = _io_spec(r, graphs, text_runtime)
        plans = _build_plans(stage, r, graphs, io)
        manifest = stage.write_manifest(
            bundle_manifest(
                r,
                stage.dir,
                noises=noises,
                graphs=graphs,
                tables=tables,
                text_runtime=text_runtime,
                io=io,
                plans=plans,
                reference=reference,
            )
        )
        manifest = _verify(stage, r.check, manifest)
        if r.sign_key is not None:
            from .signing import sign_folder

            sign_folder(stage.dir, manifest.digest, r.sign_key)
        stage.commit()
    log.info("engine bundle written to %s", r.out_dir)
    return load_manifest(r.out_dir)


def _export_scorer(stage: BundleStage, r: BundleRequest, noises) -> ExportRecord:
    """`scorer_<precision>.onnx`, the folded scorer of the J noises `noises` (J, Dz) at t."""
    from tdsm_edge.models.folded import FoldedScorer

    from .onnx_export import export_scorer

    log.info("[1/5] scorer graph (%s, %d classes, J=%d, t=%d)", r.precision, len(r.names), r.num_noises, r.timestep)
    scorer = FoldedScorer(r.model, r.schedule, noises, r.timestep, r.stats, r.precision).eval()
    return export_scorer(scorer, stage.path(f"scorer_{r.precision}.onnx"), r.precision)


def _write_tables(stage: BundleStage, r: BundleRequest) -> list[str]:
    """`tables.npz`, the K classes' tables at t (float32); returns the table names in file order."""
    import torch

    from tdsm_edge.models.class_tables import class_tables

    log.info("[2/5] class tables (float32, %d rows)", len(r.names))
    text = r.class_text
    fc, fl, mask = (
        torch.from_numpy(np.ascontiguousarray(a))
        for a in (text.global_.astype(np.float32), text.local.astype(np.float32), text.mask)
    )
    tables = {n: t.numpy() for n, t in class_tables(r.model, fc, fl, mask, r.timestep, "fp32").items()}
    np.savez(stage.path(TABLES_FILE), **tables)
    return list(tables)


def _export_encoder(stage: BundleStage, r: BundleRequest) -> dict[str, ExportRecord]:
    """`encoder_<precision>.onnx` when the request names an encoder folder: {"encoder": record}, else {}."""
    if r.encoder_dir is None:
        log.info("[3/5] encoder graph: none (no encoder given)")
        return {}
    log.info("[3/5] encoder graph (%s)", r.precision)
    from .encoder_export import export_encoder

    return {
        "encoder": export_encoder(
            r.encoder_dir, stage.path(f"encoder_{r.precision}.onnx"), r.run_config.data.frames, r.precision
        )
    }


def _export_text_side(stage: BundleStage, r: BundleRequest) -> tuple[dict[str, ExportRecord], dict | None]:
    """With `text_encoder`: the tables graph (fp32) and the MiniLM text graph (+ vocab.txt).

    Returns their records and `export_bundle_text`'s runtime info (tokenizer, max_length …), else ({}, None).
    """
    if not r.text_encoder:
        return {}, None
    from .onnx_export import export_tables
    from .text_export import export_bundle_text

    log.info("[3/5] text side for add_classes: tables graph (fp32) + MiniLM text graph")
    tables = export_tables(r.model, stage.path("tables_fp32.onnx"), r.timestep, "fp32")
    text, runtime = export_bundle_text(stage.dir, r.class_text.num_tokens, global_norm_of(r.class_text.encoder_id))
    return {TABLES_GRAPH: tables, TEXT_GRAPH: text}, runtime


def _write_reference(stage: BundleStage, r: BundleRequest, noises) -> dict:
    """With `reference_weights`: the PyTorch weights under `reference/` (safetensors + npy), what the
    runtime's torch backend loads; returns their manifest record."""
    from tdsm_edge.models.folders import save_reference_denoiser

    save_reference_denoiser(stage.path("reference/denoiser"), r.model)
    for name, a in (("feature_mean", r.stats.mean), ("feature_std", r.stats.std), ("noise_bank", noises.numpy())):
        np.save(stage.path(f"reference/{name}.npy"), np.ascontiguousarray(a, np.float32))
    out = dict(
        denoiser="reference/denoiser",
        feature_mean="reference/feature_mean.npy",
        feature_std="reference/feature_std.npy",
        noise_bank="reference/noise_bank.npy",
        encoder=None,
    )
    if r.encoder_dir is not None:
        dst = stage.path("reference/encoder")
        dst.mkdir(parents=True)
        for f in ("model.safetensors", "config.json"):
            shutil.copyfile(Path(r.encoder_dir) / f, dst / f)
        out["encoder"] = "reference/encoder"
    return out


def _io_spec(r: BundleRequest, graphs: dict[str, ExportRecord], text_runtime: dict | None) -> IOSpec:
    """The bundle's IO spec: every graph's tensors (the text side's checked against the config's) and axes."""
    K = len(r.names)
    specs = {g: GraphIO.from_specs(rec.inputs, rec.outputs) for g, rec in graphs.items() if g not in TEXT_SIDE}
    # room for classes added at run time (add_classes): TensorRT profiles stop at the axis max
    spare = ADDED_CLASSES if r.text_encoder else 0
    axes = {BATCH: r.batch, CLASSES: AxisRange(1, K, K + spare)}
    if text_runtime is not None:
        text = r.class_text
        L = int(text.num_tokens)
        Dt = text.dim // len(text.prompt_sets)
        specs.update(_checked_spec(graphs[TABLES_GRAPH], tables_io(r.model.cfg)))
        specs.update(_checked_spec(graphs[TEXT_GRAPH], text_io(L, Dt)))
        axes[TOKENS] = AxisRange(L, L, max(L, int(text_runtime["max_length"])))
    return IOSpec({"scorer": scorer_io(r.model.cfg, r.precision), **specs}, axes)  # export_scorer checked the scorer


def _build_plans(stage: BundleStage, r: BundleRequest, graphs: dict[str, ExportRecord], io: IOSpec) -> list[dict]:
    """With a plan builder: a TensorRT plan per graph except the text side (which runs on ONNX Runtime);
    returns their records, files relative to the bundle."""
    if r.plan_builder is None:
        log.info("[4/5] TensorRT plans: none")
        return []
    log.info("[4/5] TensorRT plans")
    onnx = {g: Path(rec.path) for g, rec in graphs.items() if g not in TEXT_SIDE}
    plans = [_relative(p, stage.dir) for p in r.plan_builder(stage.dir, onnx, io)]
    _check_profiles(plans, io)
    return plans


def _verify(stage: BundleStage, check: Check | None, manifest: Manifest) -> Manifest:
    """With a check: run it on the staged bundle and write its report into the manifest
    (`verify`; its "open_set" entry as `open_set`); returns the rewritten staged Manifest."""
    if check is None:
        log.info("[5/5] verify: skipped")
        return manifest
    log.info("[5/5] verify")
    report = dict(check(manifest))
    open_set = report.pop("open_set", None)
    data = {**manifest.data, "verify": report, **({"open_set": open_set} if open_set else {})}
    data.pop("files")
    return stage.write_manifest(data)


def check_text_side(class_text) -> None:
    """ConfigError unless the runtime can reproduce `class_text` from text: MiniLM features, known prompt sets."""
    from tdsm_edge.text.prompts import PROMPT_SETS

    if not str(class_text.encoder_id).startswith(MINILM_ID_PREFIX):
        raise ConfigError(
            f"the text side (--text-encoder) ships the MiniLM text graph, but this run's classes were "
            f"encoded with {class_text.encoder_id!r}; build with --no-text-encoder (classes can then "
            "only be chosen at build time: --classes)"
        )
    unknown = [s for s in class_text.prompt_sets if s not in PROMPT_SETS]
    if unknown or class_text.dim % len(class_text.prompt_sets):
        raise ConfigError(
            f"the text side cannot reproduce prompt sets {list(class_text.prompt_sets)} of "
            f"{class_text.dim} channels (known prompt sets: {list(PROMPT_SETS)}); build with --no-text-encoder"
        )


def _checked_spec(record, spec: GraphIO) -> dict:
    """{graph: spec} after checking the exported graph against the spec built from the config."""
    problems = spec.mismatches(record.inputs, record.outputs)
    if problems:
        raise ExportError(
            f"{record.path}: the exported {record.graph} graph breaks the IO spec: " + "; ".join(problems)
        )
    return {record.graph: spec}


def default_build_command(
    out_dir: Path, source: dict | None, precision: str, batch: AxisRange, text_encoder: bool = False
) -> str:
    """A build_engine command line reproducing a library-built bundle (as far as `source` tells)."""
    return rebuild.build_command(
        run=(source or {}).get("student_dir") or (source or {}).get("seed_dir") or None,
        out=out_dir,
        precision=precision,
        batch=batch.max,
        dynamic=not batch.fixed,
        text_encoder=bool(text_encoder),
    )


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
    """A plan's optimisation profile must be the one the IO spec gives its graph (when the record has one).

    Both are derived the same way (`IOSpec.input_profile`); what this checks is the plan builder (a
    caller's callback): that it built each graph with the IO spec's axis ranges.
    """
    for plan in plans:
        graph, got = plan.get("graph"), plan.get("profile")
        if got is None or graph not in io.graphs:
            continue
        want = {n: dict(min=list(lo), opt=list(opt), max=list(hi)) for n, (lo, opt, hi) in io.profile(graph).items()}
        if got != want:
            raise BundleError(
                f"the TensorRT plan {plan.get('file')} was built with the profile {got}, but the "
                f"bundle's IO spec gives {want}: the plan builder must build each graph with the IO "
                "spec's axis ranges (io.axes, as export/build_engine.py does)"
            )
