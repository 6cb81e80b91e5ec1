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
import shutil
import sys
from pathlib import Path

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
    p.add_argument("--resume", action="store_true", help="continue the student from its latest checkpoint")
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
        from .training.distill import distill_seed
        from .training.distributed import resolve_device
        from .training.pipeline import trained_class_text, trained_config

        device = resolve_device(args.device)
        teacher, out = Path(args.teacher), Path(args.out)
        if not (teacher / "denoiser").is_dir():
            raise DataError(
                f"{str(teacher)!r} holds no trained denoiser (…/<split>/seed<k>/denoiser); train one with "
                "python -m tdsm_edge.train, or convert a published checkpoint first."
            )
        if args.resume and args.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other; pass one")
        if out.exists() and any(out.iterdir()) and not (args.resume or args.overwrite):
            raise ConfigError(f"{out} is not empty; pass --resume to continue it or --overwrite to start again")
        if args.overwrite and out.exists():
            shutil.rmtree(out)
        if out.resolve() == teacher.resolve():
            raise ConfigError("--out is the teacher's folder; the student needs a folder of its own")
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
            device=device,
            resume=args.resume and (out / "denoiser" / "checkpoints").is_dir(),
            progress=not args.no_progress,
        )
        t = rec["teacher_top1"]
        print(f"\nDistilled {teacher} → {out} ({rec['train']['iterations']} iterations, {rec['seconds']:.0f} s)")
        print(f"  unseen top-1: student (decoupled) {100 * rec['student_top1']:.1f}%", end="")
        print(f", teacher (TDSM) {100 * t:.1f}%" if t is not None else ", teacher not evaluated (no metrics.json)")

    return run_main(
        body,
        logging.getLogger("tdsm_edge"),
        interrupted="interrupted; the student's latest checkpoint is kept: run the same command with --resume",
    )


if __name__ == "__main__":
    sys.exit(main())
