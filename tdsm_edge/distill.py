"""python -m tdsm_edge.distill — distil a trained TDSM denoiser into a decoupled student (same size,
text keys/values folded per class), evaluate both, print the comparison.

    python -m tdsm_edge.distill --teacher runs/demo/ru5/seed1 --out runs/demo_decoupled/ru5/seed1

The teacher is a trained seed folder (…/<split>/seed<k>/denoiser), or a converted published checkpoint
with a feature folder (--config the yaml it was trained with, --set data.features=PATH), as for
python -m tdsm_edge.evaluate. The student starts from the teacher's weights and is fine-tuned with
the triplet diffusion loss plus the distillation term (loss.w_distill); --resume continues from its
latest checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from tdsm_edge.cli import exit_main

from .cli import HelpFormatter, add_log_level, add_overrides, run_main, start_offline


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tdsm_edge.distill", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--teacher", required=True, help="the teacher's seed folder (runs/<name>/<split>/seed<k>)")
    p.add_argument("--out", required=True, help="the student's folder (laid out as a seed folder)")
    p.add_argument("--iterations", type=int, default=None, help="fine-tuning steps (default: the teacher's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the teacher's train.lr)")
    p.add_argument(
        "--w-distill", type=float, default=None, help="weight of the distillation term (default: loss.w_distill)"
    )
    add_overrides(p, "The teacher run's config, e.g. --set data.features=PATH")
    p.add_argument("--config", default=None, help="config yaml for a teacher run folder that has none")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="the comparison without distillation: the decoupled variant from random weights, triplet "
        "diffusion loss only, on the teacher's features (default: off, start from the teacher)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the student from its latest checkpoint, only evaluate a finished one, or start one "
        "when the folder holds none (as train --resume)",
    )
    p.add_argument("--overwrite", action="store_true", help="delete an existing student folder first")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_offline(args.log_level)

    def body() -> None:
        from .config import validate
        from .errors import ConfigError, DataError
        from .training.distill import distill_seed, is_student, teacher_of
        from .training.distributed import resolve_device
        from .training.pipeline import trained_class_text, trained_config

        device = resolve_device(args.device)
        teacher, out = Path(args.teacher), Path(args.out)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("distillation runs in one process; launch it with python -m, not torchrun")
        if not (teacher / "denoiser").is_dir():
            raise DataError(
                f"{str(teacher)!r} holds no trained denoiser (…/<split>/seed<k>/denoiser); train one with "
                "python -m tdsm_edge.train, or convert a published checkpoint first."
            )
        if args.resume and args.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pass one")
        t, o = teacher.resolve(), out.resolve()
        if o == t or o in t.parents or t in o.parents:
            raise ConfigError(
                f"--out {out} overlaps the teacher's folder {teacher} (the same, inside it, or holding it); "
                "give the student a folder of its own, e.g. runs/<name>_decoupled/<split>/seed<k>"
            )
        if out.exists() and any(out.iterdir()):
            if not (args.resume or args.overwrite):
                raise ConfigError(f"{out} is not empty; pass --resume to continue it or --overwrite to start again")
            if not is_student(out):
                flag = "--overwrite deletes" if args.overwrite else "--resume continues"
                raise ConfigError(
                    f"{flag} only a student folder (one holding distill.json or a denoiser/ and no encoder/, "
                    f"features/ or config.yaml); {out} is not one: pick another --out"
                )
            owner = teacher_of(out) if args.resume else None
            if owner is not None and owner.resolve() != teacher.resolve():
                raise ConfigError(
                    f"{out} is the student of {owner}, not of --teacher {teacher}; pass that teacher, or "
                    "--overwrite to distil this one instead"
                )
        if args.overwrite and out.exists():
            shutil.rmtree(out)
        root = teacher.parent.parent
        cfg = trained_config(root, args.config, args.overrides)
        validate(cfg)
        text = trained_class_text(cfg, root)
        rec = distill_seed(
            teacher,
            out,
            cfg,
            text,
            iterations=args.iterations,
            lr=args.lr,
            w_distill=args.w_distill,
            overrides=args.overrides,
            device=device,
            resume=args.resume,
            progress=not args.no_progress,
            from_scratch=args.from_scratch,
        )
        t = rec["teacher_top1"]
        took = f", {rec['seconds']:.0f} s" if rec["seconds"] is not None else ""
        how = "Trained from scratch beside" if args.from_scratch else "Distilled"
        print(f"\n{how} {teacher} → {out} ({rec['train']['iterations']} iterations{took})")
        print(f"  unseen top-1: student (decoupled) {100 * rec['student_top1']:.1f}%", end="")
        print(f", teacher (TDSM) {100 * t:.1f}%" if t is not None else ", teacher not evaluated (no metrics.json)")

    return run_main(body, logging.getLogger("tdsm_edge"), interrupted=lambda: interrupted_message(Path(args.out)))


def interrupted_message(out: Path) -> str:
    """What Ctrl-C left in the student's folder and how to go on: only a checkpoint can be resumed."""
    from .checkpoint import latest_checkpoint
    from .training.distill import student_saved

    denoiser = out / "denoiser"
    if student_saved(out):
        return "interrupted; the student is saved: run the same command with --resume to evaluate it"
    if latest_checkpoint(denoiser / "checkpoints") is not None:
        return "interrupted; the student's latest checkpoint is kept: run the same command with --resume"
    if out.is_dir() and any(out.iterdir()):
        return (
            "interrupted before the student's first checkpoint (every train.checkpoint_every steps), so there "
            "is nothing to resume: run the same command with --overwrite"
        )
    return "interrupted before the student's first checkpoint; nothing was kept: run the same command again"


if __name__ == "__main__":
    exit_main(main())
