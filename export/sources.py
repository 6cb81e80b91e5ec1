"""What an engine build reads from a training run: the seed folder, the class list, held-out samples,
and (no-argument mode) whether the embedded demo run must be trained first.

Run folders are written by `tdsm_edge.training.pipeline` (runs/<name>/config.yaml, text/,
<split>/seed<k>/{encoder,features,denoiser}).
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdsm_edge.errors import ConfigError
from tdsm_edge.io import read_user_file

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEMO_RUN, DEMO_CONFIG, DEMO_SPLIT, DEMO_SEED = Path("runs/demo"), REPO / "configs" / "demo.yaml", "ru5", 1
DEMO_OUT = Path("engines/demo")
VERIFY_SAMPLES = 512  # held-out features compared per build (a seeded subset when there are more)
VERIFY_WINDOWS = 256  # held-out synthact windows for the encoder graph


@dataclass(frozen=True)
class RunSource:
    """One trained seed of a run."""

    root: Path  # runs/<name>
    split: str
    seed: int
    seed_dir: Path  # runs/<name>/<split>/seed<k>: encoder, features (and the denoiser unless a student's)
    config: object  # RunConfig
    student_dir: Path | None = None  # a distilled student (python -m tdsm_edge.distill) of seed_dir, or None

    @property
    def encoder_dir(self) -> Path | None:
        d = self.seed_dir / "encoder"
        return d if (d / "model.safetensors").is_file() else None

    @property
    def denoiser_dir(self) -> Path:
        return (self.student_dir or self.seed_dir) / "denoiser"

    @property
    def given(self) -> Path:
        """The seed folder named on the command line (the student's, for a student)."""
        return self.student_dir or self.seed_dir

    @property
    def name(self) -> str:
        """The default bundle name: the run's (the folder above the split); for a student, its own run's
        (or the student folder's name when it is not laid out as <run>/<split>/seed<k>)."""
        if self.student_dir is None:
            return self.root.name
        real = self.student_dir.resolve()
        return real.parent.parent.name if _seed_number(real) >= 0 and real.parent.parent.name else real.name

    def to_dict(self) -> dict:
        d = {"run": str(self.root), "split": self.split, "seed": self.seed, "seed_dir": str(self.seed_dir)}
        return d | ({"student_dir": str(self.student_dir)} if self.student_dir is not None else {})


def is_trained(seed_dir: Path) -> bool:
    """The seed's denoiser finished training (model, config and feature statistics written)."""
    d = Path(seed_dir) / "denoiser"
    return all((d / f).is_file() for f in ("model.safetensors", "config.json", "feature_mean.npy", "feature_std.npy"))


def _seed_number(p: Path) -> int:
    m = re.fullmatch(r"seed(\d+)", p.name)
    return int(m.group(1)) if m else -1


def resolve_run(path: str | Path) -> RunSource:
    """A run folder (its first trained split/seed: the config's split first, then by name and seed),
    a seed folder (`runs/<name>/<split>/seed<k>`), or a distilled student's folder (its denoiser with
    the teacher seed's encoder, features, config and class text)."""
    from dataclasses import replace

    from tdsm_edge.config import load_config
    from tdsm_edge.training.distill import teacher_of

    path = Path(path)
    teacher = teacher_of(path)
    if teacher is not None:
        src = resolve_run(teacher)
        if not is_trained(path):
            raise ConfigError(
                f"student {str(path)!r} has not finished training (denoiser/model.safetensors missing); "
                f"continue it with python -m tdsm_edge.distill --teacher {teacher} --out {path} --resume"
            )
        return replace(src, student_dir=path)
    if is_trained(path) and _seed_number(path) >= 0:
        root, split, seed_dir = path.parent.parent, path.parent.name, path
    elif (path / "config.yaml").is_file():
        root = path
        cfg = load_config(root / "config.yaml")
        splits = sorted({p.name for p in root.iterdir() if p.is_dir()}, key=lambda s: (s != cfg.data.split, s))
        seeds = [
            s
            for sp in splits
            for s in sorted((root / sp).glob("seed*"), key=_seed_number)
            if _seed_number(s) >= 0 and is_trained(s)
        ]
        if not seeds:
            raise ConfigError(
                f"run {str(root)!r} has no trained seed (<split>/seed<k>/denoiser/model.safetensors); "
                f"train it with: python -m tdsm_edge.train --config <config> --out {root} --resume"
            )
        seed_dir = seeds[0]
        split = seed_dir.parent.name
    else:
        raise ConfigError(
            f"{str(path)!r} is neither a run folder (with config.yaml) nor a trained seed folder "
            "(<run>/<split>/seed<k> with denoiser/); train one with python -m tdsm_edge.train, or run "
            "python -m export.build_engine with no arguments for the demo"
        )
    return RunSource(root, split, _seed_number(seed_dir), seed_dir, load_config(root / "config.yaml"))


STUDENT_BAR = 0.01  # a student replaces its teacher at most this much below it on validation (issue 14)


def prefer_student(teacher: RunSource, student_dir: Path) -> tuple[RunSource, str]:
    """The student's source when its validation unseen top-1 (distill.json) is at most STUDENT_BAR below
    its teacher's, else the teacher's; and a line saying which and why. ConfigError when `student_dir`
    is not a finished student of that teacher or its record has no validation measurement."""
    from tdsm_edge.training.distill import distill_record, teacher_of

    if teacher.student_dir is not None:
        raise ConfigError(
            f"--run {teacher.given} is itself a student; --prefer-student takes the teacher's seed as --run"
        )
    owner = teacher_of(student_dir)
    if owner is None or owner.resolve() != teacher.seed_dir.resolve():
        raise ConfigError(
            f"--prefer-student {student_dir} is not a distilled student of {teacher.seed_dir} (no distill.json "
            f"naming it); make one with python -m tdsm_edge.distill --teacher {teacher.seed_dir} --out {student_dir}"
        )
    record = distill_record(student_dir)
    v = record.get("validation")
    v = v if isinstance(v, dict) else {}
    s, t, n = v.get("student_top1"), v.get("teacher_top1"), v.get("samples")
    if not all(isinstance(x, float) and 0 <= x <= 1 for x in (s, t)):
        raise ConfigError(
            f"{student_dir}/distill.json has no validation top-1 of the student and its teacher (an older "
            f"record, or a run without validation features); measure it with python -m tdsm_edge.distill "
            f"--teacher {teacher.seed_dir} --out {student_dir} --resume"
        )
    said = f"validation unseen top-1 ({n} samples): decoupled student {100 * s:.1f} %, teacher (TDSM) {100 * t:.1f} %"
    if s + STUDENT_BAR + 1e-9 >= t:  # 1e-9: exactly 1 point below is within (float rounding of k/n)
        return resolve_run(student_dir), f"building the decoupled student {student_dir} ({said}: within 1 point)"
    return teacher, f"building the teacher {teacher.seed_dir}, not its student ({said}: more than 1 point below)"


def class_text(src: RunSource):
    """The run's encoded class prompts (every class, global order)."""
    from tdsm_edge.text.prompts import ClassText

    path = src.root / "text" / "class_text.safetensors"
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing: the run's class text is written by training; re-run "
            f"python -m tdsm_edge.train --out {src.root} --resume"
        )
    return ClassText.load(path)


def select_classes(
    names: list[str], unseen: np.ndarray, classes: list[str] | None, classes_file: str | Path | None
) -> list[int]:
    """Global indices of the bundle classes, in score order.

    None (no --classes / --classes-file): the split's unseen classes; ["all"]: every class; else the
    names given (a file holds one name a line; blank lines and lines starting with # are skipped).
    """
    if classes_file is not None:
        p = Path(classes_file)
        try:
            text = read_user_file(p, "--classes-file", ConfigError, 1 << 20).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"--classes-file {str(p)!r} is not UTF-8 text ({e.reason} at byte {e.start}); it must "
                "hold one class name a line"
            ) from e
        classes = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if classes is None:
        return [int(i) for i in unseen]
    if [c.lower() for c in classes] == ["all"]:
        return list(range(len(names)))
    lookup = {n: i for i, n in enumerate(names)}
    unknown = [c for c in classes if c not in lookup]
    if unknown:
        hints = {c: difflib.get_close_matches(c, names, n=2) for c in unknown}
        raise ConfigError(
            "unknown class names: "
            + "; ".join(f"{c!r}" + (f" (did you mean {h}?)" if h else "") for c, h in hints.items())
            + f". The run's classes are: {', '.join(names)}"
        )
    if len(set(classes)) != len(classes) or not classes:
        raise ConfigError(f"--classes must name at least one class, each once; got {classes}")
    return [lookup[c] for c in classes]


def held_out_features(
    src: RunSource, indices: list[int], num_classes: int, unseen: np.ndarray, limit: int = VERIFY_SAMPLES
) -> tuple[np.ndarray, np.ndarray, str]:
    """(z (N, Dz), labels (N,), which) of the seed's test features: ztest when the bundle classes are
    unseen classes, else gtest (all test classes); a seeded subset of `limit` samples."""
    from tdsm_edge.training.split_data import seed_features

    feats = seed_features(src.config, src.seed_dir, unseen, num_classes)
    if set(indices) <= set(int(u) for u in unseen):
        z, y, which = feats.ztest, feats.z_label, "ztest"
    else:
        z, y, which = feats.gtest, feats.g_label, "gtest"
    if len(z) > limit:
        keep = np.sort(np.random.default_rng(0).choice(len(z), limit, replace=False))
        z, y = z[keep], y[keep]
    return np.ascontiguousarray(z, np.float32), np.asarray(y), which


def open_set_features(src: RunSource, num_classes: int, unseen: np.ndarray, limit: int = 2048):
    """(val, test) as `(z, global labels)` pairs for the open-set calibration: the run's validation
    features (None when it has none) and its all-class test features (gtest), seeded subsets of at most
    `limit` samples each."""
    from tdsm_edge.training.split_data import seed_features

    feats = seed_features(src.config, src.seed_dir, unseen, num_classes)

    def cut(z, y):
        if z is None or y is None or len(z) == 0:
            return None
        if len(z) > limit:
            keep = np.sort(np.random.default_rng(1).choice(len(z), limit, replace=False))
            z, y = z[keep], y[keep]
        return np.ascontiguousarray(z, np.float32), np.asarray(y)

    return cut(feats.val, feats.val_label), cut(feats.gtest, feats.g_label)


def held_out_windows(src: RunSource, indices: list[int], limit: int = VERIFY_WINDOWS) -> np.ndarray | None:
    """Preprocessed test windows (N, 3, T, V, M) of the bundle classes, for synthact runs (generated with
    the run's test seed, data.seed + 2, as the pipeline does); None for other datasets."""
    d = src.config.data
    if d.dataset != "synthact":
        return None
    from tdsm_edge.data.synthact import generate
    from tdsm_edge.skeleton.preprocess import preprocess_batch

    per_class = max(1, -(-limit // len(indices)))
    raw, _ = generate(np.asarray(indices), per_class, seed=d.seed + 2, frames=d.frames)
    return preprocess_batch(raw, d.frames)[:limit]


def demo_action(run_dir: str | Path | None = None) -> str:
    """What the no-argument mode must do before exporting: "reuse" the trained demo seed (split ru5,
    seed 1 of `run_dir`, default runs/demo) or "train" it."""
    return "reuse" if is_trained(Path(run_dir or DEMO_RUN) / DEMO_SPLIT / f"seed{DEMO_SEED}") else "train"


def ensure_demo_run(run_dir: str | Path | None = None, config: str | Path | None = None, progress: bool = True) -> Path:
    """Train the demo run (default runs/demo with configs/demo.yaml) for split ru5, seed 1 unless
    `demo_action` says it is trained (an interrupted run resumes: finished stages are reused).
    Returns the seed folder."""
    run_dir, config = Path(run_dir or DEMO_RUN), Path(config or DEMO_CONFIG)
    seed_dir = run_dir / DEMO_SPLIT / f"seed{DEMO_SEED}"
    if demo_action(run_dir) == "reuse":
        log.info("demo run: reusing the trained seed %s", seed_dir)
        return seed_dir
    from tdsm_edge.config import load_config
    from tdsm_edge.training.distributed import resolve_device
    from tdsm_edge.training.pipeline import run

    cfg = load_config(config)
    log.info(
        "demo run: training %s (%s, split %s, seed %d; about 6 minutes on 2 CPU cores)",
        run_dir,
        config,
        DEMO_SPLIT,
        DEMO_SEED,
    )
    run(
        cfg, run_dir, [DEMO_SPLIT], [DEMO_SEED], device=resolve_device(cfg.train.device), resume=True, progress=progress
    )
    return seed_dir
