"""Reading and checking an engine bundle's manifest.json: numpy + json only (never torch or onnx).

An engine bundle (`engines/<name>/`) is a folder:
    manifest.json          everything below, plus the sha256 of every other file
    scorer_<prec>.onnx     the folded scorer graph: z (batch, Dz) + class tables → errors (batch, classes)
    encoder_<prec>.onnx    optional: preprocessed window (batch, 3, T, V, M) → z (batch, Dz)
    tables.npz             the class tables, float32, one row per class in score order (numpy-readable)
    tables_fp32.onnx       optional, with text_encoder.onnx + vocab.txt: the text side for classes added
                           at run time (class text → class tables; prompt tokens → MiniLM text features)
    *.plan                 optional TensorRT plans (their build machine is recorded here, never inside them)

`load_manifest` checks the schema version, that every file is present with the recorded sha256, and
that the IO spec agrees with the class list and the tables; every error names the exact command
that rebuilds the bundle (recorded at build time). `check_plan_compat` checks a plan against the
TensorRT version and GPU of the machine about to load it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tdsm_edge.errors import BundleError, EngineIncompatibleError
from tdsm_edge.io import sha256_file

from .iospec import CLASSES, TABLES_GRAPH, TEXT_GRAPH, IOSpec

log = logging.getLogger(__name__)

DEFAULT_REBUILD = "python -m export.build_engine"
SCHEMA_VERSION = 1
FORMAT = "tdsm-edge-bundle"
MANIFEST = "manifest.json"
TABLES_FILE = "tables.npz"
REQUIRED_KEYS = ("schema_version", "format", "build", "classes", "text", "skeleton", "model", "scoring",
                 "precision", "io", "graphs", "tables", "plans", "files")


@dataclass(frozen=True)
class Manifest:
    """A loaded, checked manifest. `data` is the json as written; the properties name the parts."""
    root: Path
    data: dict
    io: IOSpec

    @property
    def rebuild_command(self) -> str:
        return str(self.data["build"]["command"])

    @property
    def class_names(self) -> list[str]:
        return list(self.data["classes"]["names"])

    @property
    def precision(self) -> str:
        return str(self.data["precision"])

    @property
    def graphs(self) -> dict[str, dict]:
        return dict(self.data["graphs"])

    @property
    def plans(self) -> list[dict]:
        return list(self.data["plans"])

    def path(self, graph_or_file: str) -> Path:
        """Absolute path of a graph ("scorer", "encoder") or of a file named relative to the bundle."""
        graphs = self.data["graphs"]
        return self.root / (graphs[graph_or_file]["file"] if graph_or_file in graphs else graph_or_file)

    def error(self, what: str, why: str) -> BundleError:
        return bundle_error(self.root, what, why, self.rebuild_command)

    def check_plan(self, plan: dict, trt_version: str, gpu_name: str, compute_capability) -> None:
        """`check_plan_compat` with this bundle's rebuild command."""
        check_plan_compat(plan, trt_version, gpu_name, compute_capability, self.rebuild_command)


def bundle_error(root: Path | str, what: str, why: str, command: str | None, cls=BundleError) -> BundleError:
    """'<bundle>: <what>: <why>.' plus the rebuild command (or how to build one when it is unknown)."""
    fix = (f"Rebuild the bundle with:\n  {command}" if command else
           "Build a bundle with: python -m export.build_engine --run runs/<name> --out " + str(root))
    return cls(f"engine bundle {str(root)!r}: {what}: {why}.\n{fix}")


def load_manifest(bundle_dir: str | Path, check_files: bool = True) -> Manifest:
    """Read `bundle_dir/manifest.json` and check it against the bundle's files.

    Checks: the schema version; every file listed is present and has its recorded sha256 (skipped
    with `check_files=False`); every graph, plan and the tables file are listed; the IO spec parses,
    has the scorer graph, and its class axis matches the class list.

    Raises:
        BundleError: naming the file or field, why it is refused, and the rebuild command.
    """
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not path.is_file():
        why = "the folder does not exist" if not root.exists() else f"it has no {MANIFEST}"
        raise bundle_error(root, "not an engine bundle", why, None)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bundle_error(root, f"{MANIFEST} cannot be read", str(e), None) from e
    command = data.get("build", {}).get("command") if isinstance(data, dict) else None
    fail = lambda what, why: bundle_error(root, what, why, command)  # noqa: E731
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail(f"{MANIFEST} is not a {FORMAT} manifest", f"its format field is {data.get('format')!r}"
                   if isinstance(data, dict) else "it is not a json object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise fail(f"manifest schema version {version!r}", f"this code reads schema version {SCHEMA_VERSION} only "
                   f"({'an older' if isinstance(version, int) and version < SCHEMA_VERSION else 'another'} "
                   "bundle format)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise fail(f"{MANIFEST} lacks {missing}", "it was not written by export.bundle or was edited")
    try:
        manifest = Manifest(root, data, IOSpec.from_dict(data["io"]))
        _check_consistency(manifest)
    except BundleError as e:
        if str(root) in str(e):
            raise
        raise fail("the IO spec", str(e)) from e
    except (KeyError, TypeError, AttributeError) as e:
        raise fail(f"{MANIFEST} is malformed", f"{type(e).__name__}: {e}") from e
    if check_files:
        check_files_sha256(manifest)
    return manifest


def _check_consistency(m: Manifest) -> None:
    data, io = m.data, m.io
    names = m.class_names
    if not names or len(set(names)) != len(names):
        raise m.error("the class list", f"class names must be unique and non-empty, got {names}")
    if "scorer" not in data["graphs"] or "scorer" not in io.graphs:
        raise m.error("the scorer graph", "the manifest lists no scorer graph or no IO spec for it")
    unspecified = sorted(set(data["graphs"]) - set(io.graphs))
    if unspecified:
        raise m.error(f"the graphs {unspecified}", "they have no entry in the IO spec")
    classes = io.axes.get(CLASSES)
    if classes is None or classes.max < len(names) or classes.opt != len(names):
        raise m.error("the IO spec's class axis", f"its opt/max are {classes.opt if classes else None}/"
                      f"{classes.max if classes else None} but the bundle lists {len(names)} classes")
    tables = [t.name for t in io.graphs["scorer"].inputs[1:]]
    if list(data["tables"].get("names", [])) != tables:
        raise m.error("the class tables", f"tables.npz holds {data['tables'].get('names')} but the scorer's IO spec "
                      f"reads {tables}")
    listed = set(data["files"])
    needed = [g["file"] for g in data["graphs"].values()] + [data["tables"]["file"]]
    text_side = [g for g in (TABLES_GRAPH, TEXT_GRAPH) if g in data["graphs"]]
    if text_side:
        runtime = data["text"].get("runtime")
        if len(text_side) != 2 or not isinstance(runtime, dict):
            raise m.error("the text side", f"it has the graphs {text_side} and text.runtime "
                          f"{'set' if runtime else 'missing'}; add_classes needs both graphs and text.runtime")
        want = [(t.name, t.dims) for t in io.graphs["scorer"].inputs[1:]]
        got = [(t.name, t.dims) for t in io.graphs[TABLES_GRAPH].outputs]
        if got != want:
            raise m.error("the tables graph", f"it writes {got} but the scorer reads the tables {want}")
        needed.append(runtime["vocab"])
    needed += [p["file"] for p in data["plans"]]
    unlisted = [f for f in needed if f not in listed]
    if unlisted:
        raise m.error(f"the files {unlisted}", "they are used but have no sha256 in the manifest")


def check_files_sha256(m: Manifest) -> None:
    """Every listed file exists and hashes to its recorded sha256 (BundleError otherwise)."""
    for rel, digest in m.data["files"].items():
        p = m.root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise m.error(f"the file entry {rel!r}", "bundle files must be named relative to the bundle folder")
        if not p.is_file():
            raise m.error(f"{rel} is missing", "the manifest lists it, so the bundle is incomplete")
        got = sha256_file(p)
        if got != digest:
            raise m.error(f"{rel} has sha256 {got[:12]}…, the manifest records {digest[:12]}…",
                          "the file was modified or corrupted after the build (or belongs to another build)")


def load_tables(m: Manifest) -> dict[str, np.ndarray]:
    """The class tables as float32 arrays, name → (K, ...), checked against the scorer's IO spec."""
    path = m.path(m.data["tables"]["file"])
    try:
        with np.load(path, allow_pickle=False) as z:
            tables = {n: np.asarray(z[n]) for n in z.files}
    except Exception as e:  # zipfile / ValueError / KeyError: name the file
        raise m.error(f"{path.name} cannot be read", f"{type(e).__name__}: {e}") from e
    K = len(m.class_names)
    spec = m.io.graphs["scorer"]
    for t in spec.inputs[1:]:
        want = t.shape({CLASSES: K})
        got = tables.get(t.name)
        if got is None or got.shape != want:
            raise m.error(f"class table {t.name!r}", f"it is {None if got is None else got.shape} in {path.name}, "
                          f"the IO spec says {want}")
    return {t.name: tables[t.name].astype(np.float32, copy=False) for t in spec.inputs[1:]}


def check_plan_compat(plan: dict, trt_version: str, gpu_name: str, compute_capability,
                      rebuild_command: str | None = None, strict_gpu: bool = True) -> None:
    """Refuse a TensorRT plan built with another TensorRT version, on another GPU model or compute capability.

    A plan deserializes only on the exact TensorRT version that built it, holds kernels for one
    compute capability, and its tactics were timed on one GPU model, so all three must match; every
    mismatch is listed. The project's one implementation (`export.tensorrt_build.check_plan_compat`
    calls it); no TensorRT import.

    Args:
        plan: the plan's manifest record (`tensorrt_version`, `gpu_name`, `compute_capability`, `file`).
        trt_version, gpu_name, compute_capability: this machine's (cc as "8.7", (8, 7) or "sm_87").
        rebuild_command: the bundle's build command, named in the error (default: `DEFAULT_REBUILD`).
        strict_gpu: False only logs a GPU-model mismatch of the same compute capability (the plan
            loads; its tuning is the other GPU's).
    Raises:
        EngineIncompatibleError: naming each difference and the rebuild command (to run on this machine).
    """
    rebuild_command = rebuild_command or DEFAULT_REBUILD

    def cc(v) -> str:  # "8.7" from "8.7", (8, 7), "sm_87" or 87
        if isinstance(v, (tuple, list)):
            return ".".join(str(int(x)) for x in v)
        s = str(v).strip().lower().removeprefix("sm_")
        return s if "." in s or not s.isdigit() or len(s) < 2 else f"{int(s[:-1])}.{s[-1]}"

    def gpu(v) -> str:
        return " ".join(str(v).split()).casefold()

    checks = [("TensorRT version", plan.get("tensorrt_version"), trt_version, str),
              ("compute capability", plan.get("compute_capability"), compute_capability, cc),
              ("GPU", plan.get("gpu_name"), gpu_name, gpu)]
    problems = [f"{what}: the plan was built with {want if want is not None else '(not recorded)'}, "
                f"this machine has {have}"
                for what, want, have, norm in checks if want is None or norm(want) != norm(have)]
    name = plan.get("file", "(unnamed)")
    if problems and not strict_gpu and len(problems) == 1 and problems[0].startswith("GPU:") \
            and plan.get("gpu_name") is not None:
        log.warning("TensorRT plan %s: %s; it loads (same compute capability) but was tuned for the other GPU. "
                    "Rebuild for best speed: %s", name, problems[0], rebuild_command)
        return
    if problems:
        raise EngineIncompatibleError(
            f"the TensorRT plan {name} cannot run here:\n  - " + "\n  - ".join(problems)
            + "\nPlans are specific to the TensorRT version and the GPU that built them. "
              f"Rebuild it on this machine with:\n  {rebuild_command}")
