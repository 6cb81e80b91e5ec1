"""Typed configuration: frozen dataclasses, named presets, yaml load/save.

A run is described by one `RunConfig`; every part of the pipeline reads only its own section.
Presets are plain data (dicts) merged into the dataclasses, so a yaml file can name a preset and
override single fields.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import read_user_file

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a run folder name under runs/: no '/', no '..'


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthact"  # dataset name ("synthact" is generated on the fly)
    split: str = "ru5"  # unseen-class split file name, e.g. ru5, ru12, side4
    samples_per_class: int = 120  # synthact: training sequences per seen class
    test_per_class: int = 100  # synthact: test sequences per UNSEEN class (ztest)
    gzsl_seen_per_class: int = 20  # synthact: held-out test sequences per SEEN class (gtest = these + ztest)
    val_per_class: int = 10  # synthact: validation sequences per class (seen and unseen), GZSL calibration only
    frames: int = 64  # sequence length T after resampling
    seed: int = 0  # data generation seed (independent of the model seed)
    skeletons: str | None = None  # ntu60 / ntu120 / pku51: folder built by `python -m tdsm_edge.data.build`
    features: str | None = None  # a published feature folder (SynSE / PURLS / SMIE layout): skips the encoder
    feature_pool: str | None = None  # PURLS per-position features (N, C, T, V): "mean" or "purls" pooling
    protocol: str = "xsub"  # which recordings train the encoder: xsub | xview | xset (NTU)


@dataclass(frozen=True)
class EncoderConfig:
    preset: str = "small"  # shift-gcn preset: "small" (demo) or "paper"
    channels: tuple[int, ...] = (16, 32, 64)  # output channels per TCN-GCN unit
    strides: tuple[int, ...] = (2, 2, 1)  # temporal stride per unit
    feature_dim: int = 256  # Dz: width of the skeleton feature z
    num_person: int = 2  # M bodies per sequence
    dropout: float = 0.0  # dropout before the classifier
    epochs: int = 15  # cross-entropy epochs on seen classes
    batch_size: int = 64
    lr: float = 0.05  # SGD with Nesterov momentum, cosine decay
    weight_decay: float = 5e-4


@dataclass(frozen=True)
class TextConfig:
    encoder: str = "minilm"  # "minilm" | "openclip:ViT-H-14" | "openclip:ViT-L-14" | "openclip:ViT-B-32"
    checkpoint: str | None = None  # local weights file (OpenCLIP needs one; MiniLM ships its own)
    prompt_sets: tuple[str, ...] = ("label", "description")  # encoded separately, concatenated on channels
    num_tokens: int = 16  # L: local tokens per prompt (padded/truncated)
    published_features: bool = False  # OpenCLIP: the published TDSM text pipeline (pad states kept,
    # penultimate layer, EOT pooling); needed for published checkpoints
    global_norm: str = "none"  # global text vector: "none" = the pooled state as is (published);
    # "l2" = unit length (sentence-transformers' MiniLM embedding)


@dataclass(frozen=True)
class DenoiserConfig:
    preset: str = "tiny"  # tiny | small | paper
    hidden_size: int = 128  # D
    depth: int = 2  # number of DiT blocks
    num_heads: int = 4
    mlp_ratio: float = 4.0
    z_dim: int = 256  # Dz: skeleton feature width (input and output)
    cond_dim: int = 768  # text channels after concatenating prompt sets
    num_tokens: int = 16  # L: local text tokens
    mask_text_padding: bool = True  # mask padded text tokens in joint attention (published code: False)
    attention: str = "joint"  # joint (published) | decoupled: text queries see text keys only (foldable per class)


@dataclass(frozen=True)
class ScheduleConfig:
    num_steps: int = 50  # T: DDPM steps
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"  # scaled_linear | linear
    prediction: str = "epsilon"  # epsilon | sample | v_prediction


@dataclass(frozen=True)
class LossConfig:
    w_diffusion: float = 1.0  # w_d: weight of MSE(eps_hat_pos, eps)
    w_triplet: float = 1.0  # w_t: weight of the triplet term
    margin: float = 1.0  # triplet margin on per-sample errors
    w_distill: float = 1.0  # w_s: weight of MSE(student, teacher prediction); only with a teacher (tdsm_edge.distill)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 3000  # denoiser optimisation steps
    batch_size: int = 256  # global batch (split over DDP ranks)
    lr: float = 1e-4  # AdamW
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine to zero
    grad_clip: float = 0.0  # max grad norm; 0 = off, as published (the demo turns it on)
    checkpoint_every: int = 1000  # steps between checkpoints (0: only at the end)
    standardize_features: bool = True  # z-score skeleton features with train statistics
    seed: int = 1  # model/optimiser seed
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "none"  # none | bf16 | fp16: autocast on CUDA (off: faithful fp32)


@dataclass(frozen=True)
class EvalConfig:
    num_noises: int = 3  # J: fixed noise bank size
    timestep: int = 25  # t: fixed diffusion step for scoring
    noise_seed: int | None = None  # seed of the noise bank; None = the run's model seed (train.seed), as published
    batch_size: int = 256  # samples per scoring call
    sweep_noises: tuple[int, ...] = ()  # e.g. (1, 3, 5): evaluate and plot accuracy vs J
    sweep_timesteps: tuple[int, ...] = ()  # e.g. (5, 15, 25, 35, 45): accuracy vs t


@dataclass(frozen=True)
class BaselineConfig:
    enabled: bool = True  # train the direct-alignment baseline on the same features
    epochs: int = 60
    lr: float = 1e-3
    temperature: float = 0.07
    hidden_dim: int = 512


@dataclass(frozen=True)
class RunConfig:
    name: str = "synthact_5"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)


# datasets the pipeline knows: synthact is generated; the others read data.skeletons or data.features
DATASETS: tuple[str, ...] = ("synthact", "ntu60", "ntu120", "pku51")

# ---------------------------------------------------------------- presets (data, not code)
DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=128, depth=2, num_heads=4, mlp_ratio=4.0),
    "small": dict(hidden_size=256, depth=4, num_heads=4, mlp_ratio=4.0),
    "paper": dict(hidden_size=768, depth=12, num_heads=12, mlp_ratio=4.0),
}

ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    # reduced: 3 narrow units, trains in minutes on 2 CPU cores with 32-frame windows; the 10-unit
    # paper preset costs ~20x more per sample. Its features are the last unit's 64 channels: a Linear
    # to a wider feature_dim could not add rank (features would fill a 64-d subspace)
    "small": dict(channels=(16, 32, 64), strides=(2, 2, 1), feature_dim=64),
    # the paper's Shift-GCN: 10 units, 64-64-64-64-128-128-128-256-256-256, stride 2 at units 5 and 8
    "paper": dict(channels=(64, 64, 64, 64, 128, 128, 128, 256, 256, 256), strides=(1, 1, 1, 1, 2, 1, 1, 2, 1, 1)),
}


def denoiser_preset(name: str, **overrides: Any) -> DenoiserConfig:
    """DenoiserConfig for a named preset (tiny / small / paper), with field overrides."""
    if name not in DENOISER_PRESETS:
        raise ConfigError(f"unknown denoiser preset {name!r}; choose one of {sorted(DENOISER_PRESETS)}")
    return DenoiserConfig(preset=name, **{**DENOISER_PRESETS[name], **overrides})


def encoder_preset(name: str, **overrides: Any) -> EncoderConfig:
    """EncoderConfig for a named Shift-GCN preset (small / paper), with field overrides."""
    if name not in ENCODER_PRESETS:
        raise ConfigError(f"unknown encoder preset {name!r}; choose one of {sorted(ENCODER_PRESETS)}")
    return EncoderConfig(preset=name, **{**ENCODER_PRESETS[name], **overrides})


# ---------------------------------------------------------------- dict / yaml conversion
def dataclass_from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """Dataclass `cls` from a json / yaml dict: the one parser of the project's typed records (the RunConfig and
    its sections, a saved baseline's config, a bundle's tokenizer settings).

    Unknown keys are refused, every value is checked against its field's type (int, float, bool, str,
    X | None, tuple[X, ...]; lists become tuples, ints are accepted for floats), missing keys take the
    field's default. ConfigError "<where>.<key>: expected …, got …" names the key, the value and the type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    required = [
        n
        for n, f in known.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if required:
        raise ConfigError(f"{where}: missing key(s) {required}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is RunConfig else None
        if sub is not None:
            kwargs[name] = value if isinstance(value, sub) else _section(sub, value, f"{where}.{name}")
        else:
            kwargs[name] = _typed(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _typed(value: Any, hint: Any, where: str) -> Any:
    """`value` as a field of type `hint` (int, float, bool, str, X | None, tuple[X, ...]), or ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _typed(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, f"a list of {args[0].__name__}s, e.g. [{_EXAMPLE[args[0]]}]", where)
        return tuple(_typed(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        try:
            value = float(value)  # an int too large for a float overflows here
        except OverflowError:
            number = False
        number = number and math.isfinite(value)
    ok = {
        bool: isinstance(value, bool),
        int: number and isinstance(value, int),
        float: number,
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise _type_error(
            value, {float: "a finite number"}.get(hint, f"{'an' if hint is int else 'a'} {hint.__name__}"), where
        )
    if hint is int and abs(value) > MAX_INT:
        raise ConfigError(f"{where}: {_show(value)} is too large (at most {MAX_INT:,})")
    return value


_EXAMPLE = {int: "1, 2", str: '"a", "b"', float: "0.5, 1.0"}


MAX_INT = 2**53  # no config int is larger; beyond it a float no longer holds it exactly


def _show(value: Any) -> str:
    if isinstance(value, int) and abs(value) > 10**30:
        return f"an int of {len(str(abs(value)))} digits"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "…"


def _type_error(value: Any, expected: str, where: str) -> ConfigError:
    got = _show(value) if _show(value).startswith("an int of") else f"{type(value).__name__} {_show(value)}"
    return ConfigError(f"{where}: expected {expected}, got {got}")


def section_from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    """One config section (e.g. DenoiserConfig) from a dict, typed and range-checked like a yaml file's sections."""
    sec = _section(cls, data, where)
    problems = section_problems({c: n for n, c in _SECTIONS.items()}[cls], sec)
    if problems:
        raise ConfigError(f"{where}: {problems[0]}")
    return sec


def _section(cls: type, data: dict[str, Any], where: str) -> Any:
    """A section, expanding its `preset` key first where the section has presets."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    presets = {DenoiserConfig: DENOISER_PRESETS, EncoderConfig: ENCODER_PRESETS}.get(cls)
    if presets is not None and "preset" in data:
        name = data["preset"]
        if name not in presets:
            raise ConfigError(f"{where}.preset: unknown preset {name!r}; choose one of {sorted(presets)}")
        data = {**presets[name], **data}
    return dataclass_from_dict(cls, data, where)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "encoder": EncoderConfig,
    "text": TextConfig,
    "denoiser": DenoiserConfig,
    "schedule": ScheduleConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "baseline": BaselineConfig,
}


def config_from_dict(data: dict[str, Any], where: str = "config") -> RunConfig:
    """RunConfig from a nested dict (as read from yaml); validates keys and values."""
    cfg = dataclass_from_dict(RunConfig, data, where)
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for yaml/json."""

    def conv(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def load_config(path: str | Path) -> RunConfig:
    """Read a RunConfig from a yaml file (clear errors for a missing file or bad keys)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(read_user_file(path, "config file", ConfigError, 1 << 20).decode("utf-8")) or {}
    except RecursionError as e:
        raise ConfigError(f"config file {str(path)!r} nests too deeply to be a run config") from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start}); a config is "
            "a yaml text file such as configs/demo.yaml"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid yaml: {' '.join(str(e).split())}") from e
    return config_from_dict(data, where=str(path))


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """A copy of `cfg` with `section.key=value` overrides applied (values parsed as yaml)."""
    import yaml

    presets = [o for o in overrides if o.partition("=")[0].strip().endswith(".preset")]
    if presets:
        raise ConfigError(
            f"overrides {presets} change a preset; presets expand when a yaml file is loaded, so "
            "set the preset in the yaml file instead."
        )
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.iterations=500")
        section, name = parts
        if not isinstance(data.get(section), dict):
            raise ConfigError(
                f"override {item!r}: unknown section {section!r}; sections are "
                f"{[k for k, v in data.items() if isinstance(v, dict)]}"
            )
        if name not in data[section]:
            raise ConfigError(f"override {item!r}: {section} has no key {name!r}; keys are {sorted(data[section])}")
        try:
            data[section][name] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid yaml: {e}") from e
    return config_from_dict(data, where="config (with --set)")


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write a RunConfig as yaml (atomic: temp file then rename)."""
    import yaml

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported for nested updates in code and tests."""
    return dataclasses.replace(cfg, **changes)


BIG = 10**9  # a generous ceiling for counts (samples, epochs, iterations, batch sizes)
# section -> field -> (lo, hi, lo excluded): every numeric field's range (each item, for a tuple field)
BOUNDS: dict[str, dict[str, tuple[float, float, bool]]] = {
    "data": {
        "samples_per_class": (1, BIG, False),
        "test_per_class": (1, BIG, False),
        "gzsl_seen_per_class": (0, BIG, False),
        "val_per_class": (0, BIG, False),
        "frames": (1, 100_000, False),
        "seed": (0, MAX_INT, False),
    },
    "encoder": {
        "channels": (1, 65_536, False),
        "strides": (1, 64, False),
        "feature_dim": (1, 65_536, False),
        "num_person": (1, 16, False),
        "dropout": (0, 1, False),
        "epochs": (1, BIG, False),
        "batch_size": (1, BIG, False),
        "lr": (0, 1e3, True),
        "weight_decay": (0, 1e3, False),
    },
    "text": {"num_tokens": (1, 4096, False)},
    "denoiser": {
        "hidden_size": (1, 65_536, False),
        "depth": (1, 1024, False),
        "num_heads": (1, 1024, False),
        "mlp_ratio": (0, 64, True),
        "z_dim": (1, 65_536, False),
        "cond_dim": (1, 65_536, False),
        "num_tokens": (1, 4096, False),
    },
    "schedule": {"num_steps": (1, 100_000, False), "beta_start": (0, 1, True), "beta_end": (0, 1, True)},
    "loss": {
        "w_diffusion": (0, 1e6, False),
        "w_triplet": (0, 1e6, False),
        "margin": (0, 1e6, False),
        "w_distill": (0, 1e6, False),
    },
    "train": {
        "iterations": (1, BIG, False),
        "batch_size": (2, BIG, False),
        "lr": (0, 1e3, True),
        "weight_decay": (0, 1e3, False),
        "warmup_steps": (0, BIG, False),
        "grad_clip": (0, 1e6, False),
        "checkpoint_every": (0, BIG, False),
        "seed": (0, MAX_INT, False),
    },
    "eval": {
        "num_noises": (1, 4096, False),
        "timestep": (0, 100_000, False),
        "noise_seed": (0, MAX_INT, False),
        "batch_size": (1, BIG, False),
        "sweep_noises": (1, 4096, False),
        "sweep_timesteps": (0, 100_000, False),
    },
    "baseline": {
        "epochs": (1, BIG, False),
        "lr": (0, 1e3, True),
        "temperature": (0, 1e3, True),
        "hidden_dim": (1, 65_536, False),
    },
}
ENUMS: dict[str, dict[str, tuple]] = {
    "text": {"global_norm": ("none", "l2")},
    "denoiser": {"attention": ("joint", "decoupled")},
    "schedule": {"prediction": ("epsilon", "sample", "v_prediction"), "beta_schedule": ("scaled_linear", "linear")},
    "train": {"amp": ("none", "bf16", "fp16")},
    "data": {"dataset": DATASETS, "feature_pool": (None, "mean", "purls"), "protocol": ("xsub", "xview", "xset")},
}


def noise_seed(eval_cfg: EvalConfig, train_seed: int) -> int:
    """The seed of the fixed noise bank: eval.noise_seed, or (None) the run's model seed, as the published
    code draws the bank from the run seed."""
    return int(train_seed if eval_cfg.noise_seed is None else eval_cfg.noise_seed)


def section_problems(name: str, sec: Any) -> list[str]:
    """What is out of range or inconsistent inside one section (e.g. "denoiser"): bounds, allowed values and
    the rules between its own fields. Cross-section rules are in `validate`."""
    out = []
    for field_name, (lo, hi, open_lo) in BOUNDS.get(name, {}).items():
        value = getattr(sec, field_name)
        for v in (value if isinstance(value, tuple) else (value,)) if value is not None else ():
            if not ((v > lo if open_lo else v >= lo) and v <= hi):
                out.append(f"{name}.{field_name} must lie in {'(' if open_lo else '['}{lo:g}, {hi:g}], got {v}")
    for field_name, allowed in ENUMS.get(name, {}).items():
        if getattr(sec, field_name) not in allowed:
            out.append(f"{name}.{field_name} {getattr(sec, field_name)!r} must be one of {list(allowed)}")
    if name == "denoiser" and sec.num_heads >= 1 and sec.hidden_size % sec.num_heads:
        out.append(
            f"denoiser.hidden_size ({sec.hidden_size}) must be divisible by denoiser.num_heads ({sec.num_heads})"
        )
    if name == "schedule" and not sec.beta_start < sec.beta_end:
        out.append(f"schedule betas must satisfy beta_start < beta_end, got {sec.beta_start} and {sec.beta_end}")
    if name == "encoder":
        if sec.dropout >= 1:
            out.append(f"encoder.dropout must be < 1, got {sec.dropout}")
        if not sec.channels or len(sec.channels) != len(sec.strides):
            out.append("encoder.channels and encoder.strides must be non-empty and of the same length")
    if name == "text" and not sec.prompt_sets:
        out.append("text.prompt_sets must name at least one prompt set")
    return out


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError with a fix hint for values out of range or that cannot work together."""
    d, s, e = cfg.denoiser, cfg.schedule, cfg.eval
    problems = [p for name in _SECTIONS for p in section_problems(name, getattr(cfg, name))]
    checks = [
        (
            d.num_tokens == cfg.text.num_tokens,
            f"denoiser.num_tokens ({d.num_tokens}) must equal text.num_tokens ({cfg.text.num_tokens})",
        ),
        (
            d.z_dim == cfg.encoder.feature_dim,
            f"denoiser.z_dim ({d.z_dim}) must equal encoder.feature_dim ({cfg.encoder.feature_dim})",
        ),
        (
            0 <= e.timestep < s.num_steps,
            f"eval.timestep ({e.timestep}) must lie in [0, schedule.num_steps={s.num_steps})",
        ),
        (all(0 <= t < s.num_steps for t in e.sweep_timesteps), f"eval.sweep_timesteps must lie in [0, {s.num_steps})"),
        (
            not cfg.text.published_features or cfg.text.encoder.startswith("openclip:"),
            "text.published_features reproduces the published OpenCLIP pipeline; it needs an openclip:* encoder",
        ),
        (
            not (cfg.data.skeletons and cfg.data.features),
            "set data.skeletons (raw skeletons: train the encoder) or data.features (published features), not both",
        ),
        (
            bool(RUN_NAME.fullmatch(cfg.name)),
            f"name {cfg.name!r} must be a plain folder name (letters, digits, '.', "
            "'_', '-'; no '/' or '..'): the run is written to runs/<name>",
        ),
    ]
    problems += [msg for ok, msg in checks if not ok]
    if problems:
        raise ConfigError(
            f"invalid config: {problems[0]}"
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")
        )
