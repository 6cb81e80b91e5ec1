"""Distilling a trained TDSM denoiser (the teacher) into a decoupled student of the same size.

The student (`denoiser.attention: decoupled`: text queries attend to text keys only, so every block's
text keys/values fold into per-class tables) starts from the teacher's weights — the parameter names
are the same — and is fine-tuned with the triplet diffusion loss plus a distillation term: the mean
squared difference between its prediction and the teacher's on the same x_t, t and class text
(`loss.w_distill`), for the positive and the negative pass alike. Not in the paper (issue 14).

Student folder (`out`; `python -m tdsm_edge.evaluate --run <out> --config <the run's yaml>` re-evaluates it):
    <out>/denoiser/        the student (models/folders.py denoiser folder) + checkpoints/ while training
    <out>/metrics.json     its evaluation on the teacher's test features (as training writes it)
    <out>/distill.json     teacher vs student unseen top-1, the settings and the time it took
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import RunConfig, replace, to_dict
from ..errors import DataError
from ..io import read_json, write_json

log = logging.getLogger(__name__)


def student_config(
    teacher_cfg: RunConfig,
    iterations: int | None,
    lr: float | None,
    w_distill: float | None,
    overrides: list[str] = (),
) -> RunConfig:
    """The teacher's run config with `--set` overrides, the decoupled attention and the distillation
    settings; ConfigError when a value is out of range (validated as training validates)."""
    from ..config import apply_overrides, validate

    teacher_cfg = apply_overrides(teacher_cfg, list(overrides))
    train = replace(
        teacher_cfg.train,
        **{k: v for k, v in dict(iterations=iterations, lr=lr).items() if v is not None},
    )
    loss = replace(teacher_cfg.loss, **({"w_distill": w_distill} if w_distill is not None else {}))
    cfg = replace(teacher_cfg, denoiser=replace(teacher_cfg.denoiser, attention="decoupled"), train=train, loss=loss)
    validate(cfg)
    return cfg


def distill_seed(
    teacher_dir: str | Path,
    out_dir: str | Path,
    run_cfg: RunConfig,
    class_text,
    *,
    iterations: int | None = None,
    lr: float | None = None,
    w_distill: float | None = None,
    overrides: list[str] = (),
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train and evaluate the decoupled student of one trained seed folder; returns the distill.json record.

    Args:
        teacher_dir: `runs/<name>/<split>/seed<k>` (its `denoiser/`; features from `features/` or the
            feature folder `run_cfg.data.features` names, as evaluation reads them).
        out_dir: the student's folder (see the module docstring).
        run_cfg: the run's config (data, text and eval sections); class_text: its `ClassText`.
        iterations, lr, w_distill: None = the teacher's train.iterations / train.lr and loss.w_distill.
        overrides: `--set` values applied to the teacher's config before those (train, loss, …).
        resume: continue from the student's latest checkpoint; a student already saved is only evaluated.
    """
    from ..models.folders import load_denoiser
    from .evaluation import evaluate_seed
    from .split_data import seed_features, split_classes

    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    teacher, _, _, teacher_cfg = load_denoiser(teacher_dir / "denoiser", device)
    if teacher_cfg.denoiser.attention != "joint":
        raise DataError(f"{teacher_dir} holds a {teacher_cfg.denoiser.attention} denoiser; the teacher must be TDSM")
    split = teacher_dir.parent.name
    unseen, seen = split_classes(run_cfg.data.dataset, split)
    feats = seed_features(run_cfg, teacher_dir, unseen, len(class_text.names))
    cfg = student_config(teacher_cfg, iterations, lr, w_distill, overrides)
    log.info(
        "distilling %s into a decoupled student: %d iterations, w_distill %g",
        teacher_dir,
        cfg.train.iterations,
        cfg.loss.w_distill,
    )
    t0 = time.perf_counter()
    done = (out_dir / "denoiser" / "model.safetensors").is_file() and (out_dir / "denoiser" / "config.json").is_file()
    if resume and done:
        log.info("%s holds a finished student: evaluating it only", out_dir)
        before = out_dir / "distill.json"
        seconds = float(read_json(before)["seconds"]) if before.is_file() else None  # its training time
    else:
        _train(feats, class_text, seen, cfg, out_dir, device, resume, progress, teacher)
        seconds = time.perf_counter() - t0
    metrics = evaluate_seed(out_dir, feats, class_text, unseen, run_cfg.eval, device)
    record = {
        "teacher": str(teacher_dir),
        "split": split,
        "student_top1": metrics["tdsm"]["zsl"]["top1"],
        "teacher_top1": _teacher_top1(teacher_dir),
        "train": to_dict(cfg.train),
        "w_distill": cfg.loss.w_distill,
        "seconds": seconds,
    }
    write_json(out_dir / "distill.json", record)
    return record


def _train(feats, class_text, seen, cfg, out_dir: Path, device, resume: bool, progress: bool, teacher) -> None:
    from .denoiser_trainer import train_denoiser

    train_denoiser(
        feats.train,
        feats.train_label,
        class_text,
        seen,
        cfg,
        out_dir / "denoiser",
        device=device,
        resume=resume,
        progress=progress,
        teacher=teacher,
        init_state=teacher.state_dict(),
    )


def _teacher_top1(teacher_dir: Path) -> float | None:
    """The teacher's unseen top-1 from its metrics.json, or None when it was never evaluated."""
    path = teacher_dir / "metrics.json"
    if not path.is_file():
        return None
    return float(read_json(path)["tdsm"]["zsl"]["top1"])
