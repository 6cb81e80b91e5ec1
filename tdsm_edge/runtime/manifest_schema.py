"""The schema of a bundle's manifest.json: every field's type, range or allowed values. Standard library only.

    problems = MANIFEST_SCHEMA.errors(data)     # ["classes.names[2]: expected …, got …", …] ([] when valid)

Each spec is a small object with `.check(value, path)` that yields one message per problem; `Obj`
refuses unknown keys, so a field this runtime does not know is an error, not ignored. Sections that
are records only (build versions, the verification report, op counts) are typed loosely (`Json`):
nothing reads them to compute an answer. The fields that change an answer are typed exactly.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

HEX64 = re.compile(r"^[0-9a-f]{64}$")
NONE_LABEL = "none of these"  # the open-set answer: no class may take this name (runtime.recognizer re-exports it)
MAX_NAME = 200


def _type(v: Any) -> str:
    return (
        "null"
        if v is None
        else {bool: "a bool", int: "an int", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
            type(v), type(v).__name__
        )
    )


def _show(v: Any) -> str:
    if isinstance(v, int) and abs(v) > 10**30:
        return f"<an int of {len(str(abs(v)))} digits>"
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "…"


class Spec:
    def check(self, v: Any, path: str) -> Iterator[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def errors(self, v: Any, path: str = "manifest") -> list[str]:
        return list(self.check(v, path))


@dataclass(frozen=True)
class Json(Spec):
    """Any json value (a record only: nothing computes an answer from it)."""

    def check(self, v, path):
        return iter(())


@dataclass(frozen=True)
class Bool(Spec):
    def check(self, v, path):
        if not isinstance(v, bool):
            yield f"{path}: expected true or false, got {_type(v)} {_show(v)}"


@dataclass(frozen=True)
class Int(Spec):
    lo: int | None = None
    hi: int | None = None

    def check(self, v, path):
        if isinstance(v, bool) or not isinstance(v, int):
            yield f"{path}: expected an int, got {_type(v)} {_show(v)}"
        elif (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            yield f"{path}: expected an int in [{self.lo}, {self.hi}], got {v}"


@dataclass(frozen=True)
class Num(Spec):
    """A finite number (ints allowed) in [lo, hi]."""

    lo: float | None = None
    hi: float | None = None

    def check(self, v, path):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 1e300:
            yield f"{path}: expected a finite number, got an int of {len(str(abs(v)))} digits"
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
            yield f"{path}: expected a finite number, got {_type(v)} {_show(v)}"
        elif (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            yield f"{path}: expected a number in [{self.lo}, {self.hi}], got {v}"


@dataclass(frozen=True)
class Str(Spec):
    enum: tuple[str, ...] | None = None
    pattern: re.Pattern | None = None
    nonempty: bool = True

    def check(self, v, path):
        if not isinstance(v, str):
            yield f"{path}: expected a string, got {_type(v)} {_show(v)}"
        elif self.enum is not None and v not in self.enum:
            yield f"{path}: expected one of {list(self.enum)}, got {_show(v)}"
        elif self.pattern is not None and not self.pattern.match(v):
            yield f"{path}: expected a string matching {self.pattern.pattern}, got {_show(v)}"
        elif self.nonempty and not v:
            yield f"{path}: expected a non-empty string"
        elif any(unicodedata.category(c) in ("Cc", "Cf") for c in v):
            yield f"{path}: {_show(v)} holds control or format characters (a newline, an escape, a bidi override)"


BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}  # letters and symbols that print as nothing
CONTROL = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # control, format (bidi overrides, zero-width), unassigned
MAX_DESCRIPTION = 2000


def _script(c: str) -> str | None:
    """LATIN / CYRILLIC / GREEK for a letter of those scripts (the look-alike-prone ones), else None."""
    if not c.isalpha():
        return None
    word = unicodedata.name(c, "").split(" ")[0]
    return word if word in ("LATIN", "CYRILLIC", "GREEK") else None


def name_problem(v: Any) -> str | None:
    """Why `v` cannot be a class name (None when it can): the one rule for the manifest and add_classes."""
    if not isinstance(v, str):
        return f"a class name must be a string, got {_type(v)} {_show(v)}"
    if len(v) > MAX_NAME:
        return f"class name {_show(v)} is {len(v)} characters long, at most {MAX_NAME}"
    if not v.strip() or all(c.isspace() or c in BLANK for c in v):
        return f"class name {v!r} is empty or prints as blank"
    if v != v.strip():
        return f"class name {v!r} starts or ends with white space"
    bad = sorted({f"U+{ord(c):04X}" for c in v if unicodedata.category(c) in CONTROL or c in BLANK})
    if bad:
        return (
            f"class name {v!r} holds control, format, blank or unassigned characters ({', '.join(bad[:5])}: e.g. "
            "a newline or a right-to-left override) that would make labels print misleadingly"
        )
    if unicodedata.category(v[0]).startswith("M"):
        return f"class name {v!r} starts with a combining mark (U+{ord(v[0]):04X})"
    scripts = {s for s in map(_script, v) if s}
    if len(scripts) > 1:
        return (
            f"class name {v!r} mixes {' and '.join(sorted(scripts))} letters, as look-alike names do (e.g. a "
            "Cyrillic 'о' in a Latin word); write it in one script"
        )
    if unicodedata.normalize("NFKC", v).casefold() == NONE_LABEL:
        return f"{NONE_LABEL!r} is the open-set answer, so no class may take that name"
    return None


def description_problem(v: Any) -> str | None:
    """Why `v` cannot be a class description (None when it can)."""
    if not isinstance(v, str) or not v.strip():
        return f"a class description must be a non-empty string, got {_type(v)} {_show(v)}"
    if len(v) > MAX_DESCRIPTION:
        return f"a class description is at most {MAX_DESCRIPTION} characters (one sentence), got {len(v)}"
    bad = sorted({f"U+{ord(c):04X}" for c in v if unicodedata.category(c) in CONTROL})
    if bad:
        return f"class description {_show(v)} holds control or format characters ({', '.join(bad[:5])})"
    return None


@dataclass(frozen=True)
class ClassName(Spec):
    def check(self, v, path):
        why = name_problem(v)
        if why:
            yield f"{path}: {why}"


@dataclass(frozen=True)
class RelPath(Spec):
    """A file named relative to the bundle folder: '/'-separated, no '..', no absolute path."""

    def check(self, v, path):
        if not isinstance(v, str) or not v:
            yield f"{path}: expected a file path inside the bundle, got {_type(v)} {_show(v)}"
            return
        parts = v.split("/")
        if (
            v.startswith("/")
            or "\\" in v
            or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)
            or any(unicodedata.category(c).startswith("C") for c in v)
        ):
            yield f"{path}: {v!r} must name a file inside the bundle ('/'-separated, relative, no '..')"


@dataclass(frozen=True)
class Opt(Spec):
    """null or `spec`."""

    spec: Spec

    def check(self, v, path):
        if v is not None:
            yield from self.spec.check(v, path)


@dataclass(frozen=True)
class OneOf(Spec):
    specs: tuple[Spec, ...]

    def check(self, v, path):
        found = [list(s.check(v, path)) for s in self.specs]
        if all(found):
            yield found[0][0] if len(found) == 1 else f"{path}: " + " or ".join(f[0].split(": ", 1)[1] for f in found)


@dataclass(frozen=True)
class Arr(Spec):
    item: Spec
    min_len: int = 0
    max_len: int | None = None
    unique: bool = False

    def check(self, v, path):
        if not isinstance(v, list):
            yield f"{path}: expected a list, got {_type(v)} {_show(v)}"
            return
        if len(v) < self.min_len or (self.max_len is not None and len(v) > self.max_len):
            yield f"{path}: expected {self.min_len}..{self.max_len if self.max_len is not None else ''} items, got {len(v)}"
        for i, x in enumerate(v):
            yield from self.item.check(x, f"{path}[{i}]")
        if self.unique:
            counts = Counter(json.dumps(x, sort_keys=True) for x in v)
            repeats = sorted(k for k, n in counts.items() if n > 1)
            if repeats:
                yield f"{path}: items must be unique, got repeats of {[_show(json.loads(r)) for r in repeats[:5]]}"


@dataclass(frozen=True)
class Map(Spec):
    """An object with free keys (matching `keys`) and values of one spec."""

    value: Spec
    keys: Spec = field(default_factory=Str)

    def check(self, v, path):
        if not isinstance(v, dict):
            yield f"{path}: expected an object, got {_type(v)} {_show(v)}"
            return
        for k, x in v.items():
            yield from self.keys.check(k, f"{path} key {k!r}")
            yield from self.value.check(x, f"{path}.{k}")


@dataclass(frozen=True)
class Obj(Spec):
    """An object with these keys: `req` must be there, `opt` may be; any other key is an error."""

    req: Mapping[str, Spec]
    opt: Mapping[str, Spec] = field(default_factory=dict)

    def check(self, v, path):
        if not isinstance(v, dict):
            yield f"{path}: expected an object, got {_type(v)} {_show(v)}"
            return
        missing = [k for k in self.req if k not in v]
        if missing:
            yield f"{path}: lacks {missing}"
        unknown = [k for k in v if k not in self.req and k not in self.opt]
        if unknown:
            yield f"{path}: unknown fields {unknown} (this runtime reads {sorted({**self.req, **self.opt})})"
        for k, spec in {**self.req, **self.opt}.items():
            if k in v:
                yield from spec.check(v[k], f"{path}.{k}")


# ------------------------------------------------------------------ the manifest
GRAPHS = ("scorer", "encoder", "tables", "text_encoder")
PRECISIONS = ("fp32", "fp16")
DTYPES = ("float32", "float16", "bool", "int64", "int32")
AXES = ("batch", "classes", "tokens")
BIG = 1 << 20  # a generous upper bound for counts and sizes
MAX_CLASSES = 1024  # classes one scorer may hold (runtime.class_set re-exports it)

_TENSOR = Obj({"name": Str(), "dtype": Str(DTYPES), "dims": Arr(OneOf((Int(1, BIG), Str(AXES))), 1, 8)})
_AXIS = Obj({"min": Int(1, BIG), "opt": Int(1, BIG), "max": Int(1, BIG)})
_GRAPH = Obj(
    {"file": RelPath(), "files": Arr(RelPath(), 1, unique=True)},
    {
        "graph": Str(GRAPHS),
        "precision": Str(PRECISIONS),
        "opset": Int(1, 100),
        "op_counts": Map(Int(0)),
        "fp32_ops": Map(Int(0)),
        "fp16_ops": Map(Int(0)),
    },
)
MAX_PROFILES = 16  # identical optimization profiles a TensorRT plan may hold (contexts that may run it at once)
_PLAN = Obj(
    {
        "file": RelPath(),
        "graph": Str(GRAPHS),
        "tensorrt_version": Str(),
        "gpu_name": Str(),
        "compute_capability": OneOf((Str(), Num(0, 100))),
    },
    {
        "sha256": Str(pattern=HEX64),
        "bytes": Int(0),
        "precision": Str(PRECISIONS),
        "precision_mode": Str(),
        "profile": Json(),
        "profiles": Int(1, MAX_PROFILES),  # copies of the profile = contexts that may run at once; absent: 1
        "workspace_bytes": Opt(Int(0)),
        "opt_level": Int(0, 5),
        "tf32": Bool(),
        "timing_cache": Opt(Str()),
        "build_seconds": Num(0),
        "onnx": Str(),
        "onnx_sha256": Str(pattern=HEX64),
    },
)
_LAYOUT = Obj(
    {
        "name": Str(),
        "joint_names": Arr(Str(), 1, 256, unique=True),
        "bones": Arr(Arr(Int(0, 255), 2, 2)),
        "center_joint": Int(0, 255),
        "mirror_pairs": Arr(Arr(Int(0, 255), 2, 2)),
    }
)
_PREPROCESS = Obj(
    {
        "function": Str(("tdsm_edge.skeleton.preprocess.preprocess",)),
        "frames": Int(1, 100_000),
        "num_bodies": Int(1, 16),
        "align_view": Bool(),
    },
    {"input": Str(), "output": Str()},
)
_TOKENIZER = Obj(
    {
        "lowercase": Bool(),
        "strip_accents": Opt(Bool()),
        "clean_text": Bool(),
        "handle_chinese_chars": Bool(),
        "unk_token": Str(),
        "cls_token": Str(),
        "sep_token": Str(),
        "pad_token": Str(),
        "continuing_subword_prefix": Str(),
        "max_input_chars_per_word": Int(1, 10_000),
        "special_tokens": Arr(Str()),
    }
)
_TEXT_RUNTIME = Obj(
    {
        "text_graph": Str(("text_encoder",)),
        "tables_graph": Str(("tables",)),
        "tables_precision": Str(("fp32",)),
        "encoder_dim": Int(1, 65_536),
        "max_length": Int(3, 100_000),
        "vocab": RelPath(),
        "tokenizer": _TOKENIZER,
    },
    {"prompt_inputs": Map(Str()), "features": Str(), "reference": Str()},
)
_OPEN_SET = Obj(
    {"threshold": Num(0), "num_classes": Int(1, BIG)},
    {"accept_target": Num(0, 1), "calibrated_on": Str(), "calibration_samples": Int(0), "rule": Str(), "test": Json()},
)

MANIFEST_SCHEMA = Obj(
    req={
        "schema_version": Int(0),
        "format": Str(),
        "digest": Str(),
        "build": Obj({"command": Str()}, {"versions": Map(Str())}),
        "classes": Obj(
            {"names": Arr(ClassName(), 1, MAX_CLASSES, unique=True)},
            {"indices": Opt(Arr(Int(0, BIG))), "descriptions": Arr(Str(nonempty=False))},
        ),
        "text": Obj(
            {
                "encoder_id": Str(),
                "prompt_sets": Arr(Str(("label", "description")), 1, 2, unique=True),
                "num_tokens": Int(1, 4096),
                "dim": Int(1, 65_536),
            },
            {"runtime": _TEXT_RUNTIME},
        ),
        "skeleton": Obj({}, {"layout": _LAYOUT, "preprocess": Opt(_PREPROCESS), "dataset": Opt(Str())}),
        # read by the torch backend only, through tdsm_edge.config.section_from_dict (typed and range-checked there)
        "model": Obj({"denoiser": Map(Json()), "schedule": Map(Json())}, {"encoder": Map(Json()), "run_name": Str()}),
        "scoring": Obj(
            {"timestep": Int(0, 100_000), "num_noises": Int(1, 4096)},
            {
                "noise_seed": Int(),
                "noise_bank_sha256": Str(pattern=HEX64),
                "prediction": Str(("epsilon", "sample", "v_prediction")),
                "feature_standardization": Json(),
            },
        ),
        "precision": Str(PRECISIONS),
        "io": Obj(
            {
                "graphs": Map(Obj({"inputs": Arr(_TENSOR, 1), "outputs": Arr(_TENSOR, 1)}), Str(GRAPHS)),
                "axes": Map(_AXIS, Str(AXES)),
            }
        ),
        "graphs": Map(_GRAPH, Str(GRAPHS)),
        "tables": Obj(
            {"file": RelPath(), "names": Arr(Str(), 1, unique=True)}, {"dtype": Str(("float32",)), "note": Str()}
        ),
        "plans": Arr(_PLAN),
        "files": Map(Str(pattern=HEX64), RelPath()),
    },
    opt={
        "name": Str(),
        "created_utc": Str(),
        "source": Json(),
        "verify": Json(),
        "reference": Obj(
            {"denoiser": RelPath(), "feature_mean": RelPath(), "feature_std": RelPath(), "noise_bank": RelPath()},
            {"encoder": Opt(RelPath())},
        ),
        "open_set": _OPEN_SET,
    },
)
