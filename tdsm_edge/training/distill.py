"""Distilling a trained TDSM denoiser (the teacher) into a decoupled student of the same size.

The student (`denoiser.attention: decoupled`: text queries attend to text keys only, so every block's
text keys/values fold into per-class tables) starts from the teacher's weights — the parameter names
are the same — and is fine-tuned with the triplet diffusion loss plus a distillation term: the mean
squared difference between its prediction and the teacher's on the same x_t, t and class text
(`loss.w_distill`), for the positive and the negative pass alike. Not in the paper (issue 14).

Student folder (`out`; `python -m tdsm_edge.evaluate --run <out> --config <the run's yaml>` re-evaluates it):
    <out>/denoiser/        the student (models/folders.py denoiser folder) + checkpoints/ while training
    <out>/metrics.json     its evaluation on the teacher's test features (as training writes it)
    <out>/distill.json     teacher vs student unseen top-1 on the test features and on the VALIDATION
                           features (`validation`: what a choice between the two may read), the settings,
                           the time it took, and where the
                           teacher is (`teacher_of`: its encoder, features, config and class text serve the
                           student too, e.g. python -m export.build_engine --run <out>)
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ..config import RunConfig, replace, to_dict
from ..errors import ConfigError, DataError
from ..io import read_json, sha256_file, write_json

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
    from_scratch: bool = False,
) -> dict:
    """Train and evaluate the decoupled student of one trained seed folder; returns the distill.json record.

    Args:
        teacher_dir: `runs/<name>/<split>/seed<k>` (its `denoiser/`; features from `features/` or the
            feature folder `run_cfg.data.features` names, as evaluation reads them).
        out_dir: the student's folder (see the module docstring).
        run_cfg: the run's config (data, text and eval sections); class_text: its `ClassText`.
        iterations, lr, w_distill: None = the teacher's train.iterations / train.lr and loss.w_distill.
        overrides: `--set` values applied to the teacher's config before those (train, loss, …).
        resume: continue from the student's latest checkpoint (start when there is none); a student
            already saved is only evaluated.
        from_scratch: the comparison without a teacher: random initial weights (the teacher's model seed)
            and the triplet diffusion loss alone, on the same features and for as many iterations.
    """
    from ..models.folders import load_denoiser
    from .evaluation import evaluate_seed
    from .split_data import seed_features, split_classes

    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    teacher, teacher_schedule, teacher_stats, teacher_cfg = load_denoiser(teacher_dir / "denoiser", device)
    if teacher_cfg.denoiser.attention != "joint":
        raise DataError(f"{teacher_dir} holds a {teacher_cfg.denoiser.attention} denoiser; the teacher must be TDSM")
    split = teacher_dir.parent.name
    unseen, seen = split_classes(run_cfg.data.dataset, split)
    feats = seed_features(run_cfg, teacher_dir, unseen, len(class_text.names))
    if from_scratch and w_distill:
        raise ConfigError("--from-scratch trains without the teacher: leave --w-distill out (it would be ignored)")
    cfg = student_config(teacher_cfg, iterations, lr, 0.0 if from_scratch else w_distill, overrides)
    log.info(
        "%s %s: %d iterations, w_distill %g",
        "training from scratch the decoupled variant beside" if from_scratch else "distilling into a decoupled student",
        teacher_dir,
        cfg.train.iterations,
        cfg.loss.w_distill,
    )
    t0 = time.perf_counter()
    teacher_sha = sha256_file(teacher_dir / "denoiser" / "model.safetensors")
    before = distill_record(out_dir)
    if before.get("teacher_sha256") not in (None, teacher_sha):
        raise ConfigError(
            f"the teacher {teacher_dir} was retrained since {out_dir} was distilled from it (its weights "
            "differ); distil it again with --overwrite"
        )
    seconds = before.get("seconds") if isinstance(before.get("seconds"), (int, float)) else None
    if resume and student_saved(out_dir):
        log.info("%s holds a finished student: evaluating it only", out_dir)
        _, _, _, cfg = load_denoiser(out_dir / "denoiser", device)  # the settings it was trained with
        if cfg.denoiser.attention != "decoupled":
            raise DataError(f"{out_dir} holds a {cfg.denoiser.attention} denoiser, not a decoupled student")
        from_scratch = bool(before.get("from_scratch", from_scratch))
    else:
        from ..checkpoint import latest_checkpoint

        resume = resume and latest_checkpoint(out_dir / "denoiser" / "checkpoints") is not None  # else start
        _train(feats, class_text, seen, cfg, out_dir, device, resume, progress, None if from_scratch else teacher)
        seconds = time.perf_counter() - t0
    metrics = evaluate_seed(out_dir, feats, class_text, unseen, run_cfg.eval, device)
    student = load_denoiser(out_dir / "denoiser", device)  # the teacher is loaded already
    validation = {
        name: validation_top1(loaded, feats, class_text, unseen, run_cfg.eval, device)
        for name, loaded in (("teacher", (teacher, teacher_schedule, teacher_stats, teacher_cfg)), ("student", student))
    }
    record = {
        "teacher": str(teacher_dir),
        "teacher_relative": os.path.relpath(teacher_dir.resolve(), out_dir.resolve()),  # moves with the runs
        "teacher_absolute": str(teacher_dir.resolve()),
        "teacher_sha256": teacher_sha,  # the weights it was distilled from: a retrained teacher is noticed
        "split": split,
        "student_top1": metrics["tdsm"]["zsl"]["top1"],
        "teacher_top1": _teacher_top1(teacher_dir),
        "validation": {f"{k}_top1": v for k, v in validation.items()}
        | {"samples": int(np.isin(feats.val_label, unseen).sum()) if feats.val is not None else 0},
        "train": to_dict(cfg.train),
        "w_distill": cfg.loss.w_distill,
        "from_scratch": from_scratch,
        "seconds": seconds,
    }
    write_json(out_dir / "distill.json", record)
    return record


def validation_top1(loaded, feats, class_text, unseen, eval_cfg, device: str = "cpu") -> float | None:
    """Unseen top-1 (ZSL, among the unseen classes) of a loaded denoiser (load_denoiser's (model,
    schedule, stats, cfg)) on the unseen-class samples of the VALIDATION features, scored as evaluation
    scores the test set; None when there are none."""
    from ..config import noise_seed
    from .evaluation import tdsm_errors

    if feats.val is None:
        return None
    keep = np.isin(feats.val_label, unseen)
    if not keep.any():
        return None
    model, schedule, stats, cfg = loaded
    errors = tdsm_errors(
        model,
        schedule,
        stats,
        np.asarray(feats.val[keep], np.float32),
        class_text.subset(unseen),
        eval_cfg.num_noises,
        eval_cfg.timestep,
        noise_seed(eval_cfg, cfg.train.seed),
        eval_cfg.batch_size,
        device,
    )
    return float((np.asarray(unseen)[errors.argmin(1)] == feats.val_label[keep]).mean())


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
        init_state=None if teacher is None else teacher.state_dict(),
    )


def _teacher_top1(teacher_dir: Path) -> float | None:
    """The teacher's unseen top-1 from its metrics.json, or None when it was never evaluated."""
    path = teacher_dir / "metrics.json"
    if not path.is_file():
        return None
    return float(read_json(path)["tdsm"]["zsl"]["top1"])


def is_student(folder: str | Path) -> bool:
    """A folder python -m tdsm_edge.distill wrote: distill.json or a denoiser/, and none of a trained
    seed's other folders (encoder/, features/) nor a run's config.yaml."""
    folder = Path(folder)
    if any((folder / n).exists() for n in ("encoder", "features", "config.yaml")):
        return False
    return (folder / "distill.json").is_file() or (folder / "denoiser").is_dir()


def student_saved(folder: str | Path) -> bool:
    """The student finished training: its denoiser's weights and config are written."""
    d = Path(folder) / "denoiser"
    return (d / "model.safetensors").is_file() and (d / "config.json").is_file()


def distill_record(student_dir: str | Path) -> dict:
    """A student folder's distill.json as a dict ({} when absent); DataError when it is not a JSON object."""
    path = Path(student_dir) / "distill.json"
    if not path.is_file():
        return {}
    try:
        record = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); distil the student again with --overwrite") from e
    if not isinstance(record, dict):
        raise DataError(f"{path} is not a JSON object; distil the student again with --overwrite")
    return record


def teacher_of(student_dir: str | Path) -> Path | None:
    """The teacher seed folder of a student folder (`is_student` with distill.json), or None for any
    other folder.

    Looked up beside the student first (distill.json's `teacher_relative`, from the student's real
    path, so a runs/ tree moved as a whole still resolves), then at the absolute path recorded, then
    as typed. DataError when the teacher is gone or is itself a student (a loop).
    """
    student_dir = Path(student_dir)
    if not (
        is_student(student_dir) and (student_dir / "distill.json").is_file() and (student_dir / "denoiser").is_dir()
    ):
        return None
    record = distill_record(student_dir)
    tried = []
    keys = (("teacher_relative", student_dir.resolve()), ("teacher_absolute", Path("/")), ("teacher", Path.cwd()))
    for key, base in keys:
        value = record.get(key)
        if isinstance(value, str) and value:
            path = Path(os.path.normpath(base / value))
            if (path / "denoiser").is_dir():
                if path.resolve() == student_dir.resolve() or is_student(path):
                    raise DataError(
                        f"{student_dir}/distill.json names {path} as its teacher, which is a student itself "
                        "(or the same folder); distil from a trained TDSM seed folder again"
                    )
                return path
            tried.append(str(path))
    raise DataError(
        f"{student_dir} is a distilled student but its teacher's seed folder is gone (looked in {tried}); the "
        "student reads the teacher's encoder, features and class text: put the teacher back, or distil again"
    )
