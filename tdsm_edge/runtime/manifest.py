"""Reading and checking an engine bundle's manifest.json: numpy + json only (never torch or onnx).

An engine bundle (`engines/<name>/`) is a folder:
    manifest.json          everything below, the sha256 of every other file, and its own digest
    manifest.sig           optional: an ed25519 signature of that digest (integrity.py)
    scorer_<prec>.onnx     the folded scorer graph: z (batch, Dz) + class tables → errors (batch, classes)
    encoder_<prec>.onnx    optional: preprocessed window (batch, 3, T, V, M) → z (batch, Dz)
    tables.npz             the class tables, float32, one row per class in score order (numpy-readable)
    tables_fp32.onnx       optional, with text_encoder.onnx + vocab.txt: the text side for classes added
                           at run time (class text → class tables; prompt tokens → MiniLM text features)
    reference/             optional: the PyTorch weights of the runtime's torch backend
    *.plan                 optional TensorRT plans (their build machine is recorded here, never inside them)

`load_manifest` checks, before any graph is opened: that the folder is not an unfinished build; the
manifest's own digest (an edit made after the build is refused), a pinned digest and a signature when
given; the schema of every field (manifest_schema.py); the cross-field consistency (class list vs IO
spec vs tables); that the folder holds exactly the listed files, as regular files, no symlinks
(bundle_files.py); and every file's sha256. Backends then read files with `Manifest.read_bytes`,
which hashes the bytes it returns, so a file changed after loading is refused too. Every error names
the exact command that rebuilds the bundle (recorded at build time). `check_plan_compat` checks a plan
against the TensorRT version and GPU of the machine about to load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np

from tdsm_edge.errors import BundleError, EngineIncompatibleError, InputError

from . import bundle_files
from .integrity import DIGEST_FIELD, SIGNATURE_FILE, check_pinned_digest, manifest_digest, verify_signature
from .iospec import CLASSES, TABLES_GRAPH, TEXT_GRAPH, IOSpec
from .manifest_schema import MANIFEST_SCHEMA
from .rebuild import DEFAULT_REBUILD
from .table_schema import DECOUPLED, JOINT, table_names

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the manifest carries its own digest; the folder holds only listed files
FORMAT = "tdsm-edge-bundle"
MANIFEST = "manifest.json"
TABLES_FILE = "tables.npz"
MAX_MANIFEST_BYTES = 16 << 20
MAX_DEPTH = 32  # a manifest nests 7 levels deep; a deeper one is refused before anything walks it
# the build's temporary folders next to a bundle (export.bundle_stage.BundleStage): never loadable
TEMP_FOLDER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|old)-(?P<pid>\d+)$")


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
    def digest(self) -> str:
        """The bundle digest ("sha256:…"): covers the manifest and, through its sha256 list, every file."""
        return str(self.data[DIGEST_FIELD])

    @property
    def class_names(self) -> list[str]:
        return list(self.data["classes"]["names"])

    @property
    def precision(self) -> str:
        return str(self.data["precision"])

    @property
    def variant(self) -> str:
        """The denoiser variant: "joint" (TDSM) or "decoupled" (the student); checked at load."""
        return str(self.data["model"]["denoiser"].get("attention", JOINT))

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

    def read_bytes(self, graph_or_file: str) -> bytes:
        """The bytes of a listed file (or a graph's file), read inside the bundle only and checked against
        its recorded sha256 now: what a backend reads is what the build hashed (BundleError otherwise)."""
        graphs = self.data["graphs"]
        rel = graphs[graph_or_file]["file"] if graph_or_file in graphs else graph_or_file
        if rel not in self.data["files"]:
            raise self.error(f"{rel}", "it is not listed in the manifest, so it is not read")
        try:
            data = bundle_files.read_file(self.root, rel)
        except OSError as e:
            raise self.error(f"{rel} cannot be read", str(e)) from e
        self._compare(rel, hashlib.sha256(data).hexdigest())
        return data

    def verify_file(self, rel: str) -> None:
        """Hash a listed file now (streamed, inside the bundle only) and compare it with the manifest."""
        try:
            got = bundle_files.sha256_in(self.root, rel)
        except OSError as e:
            raise self.error(f"{rel} cannot be read", str(e)) from e
        self._compare(rel, got)

    def _compare(self, rel: str, got: str) -> None:
        want = self.data["files"][rel]
        if got != want:
            raise self.error(
                f"{rel} has sha256 {got[:12]}…, the manifest records {want[:12]}…",
                "the file was changed after the build (or after the bundle was loaded), or it belongs to another build",
            )

    @contextlib.contextmanager
    def graph_source(self, graph: str) -> Iterator[bytes | str]:
        """What to hand ONNX Runtime for a graph, valid inside the `with` block: its checked bytes; or, for a
        graph whose weights live in side files (external data, > ~1.5 GB), the path of a private copy (a
        fresh 0700 temporary folder) made from bytes hashed as they were copied, so nothing can be swapped
        between the check and ONNX Runtime's read. The copy is deleted when the block ends."""
        files = self.data["graphs"][graph]["files"]
        if len(files) == 1:
            yield self.read_bytes(graph)
            return
        private = Path(tempfile.mkdtemp(prefix="tdsm-edge-graph-"))
        try:
            for rel in files:
                self._copy_checked(rel, private)
            yield str(private / self.data["graphs"][graph]["file"])
        finally:
            shutil.rmtree(private, ignore_errors=True)

    def _copy_checked(self, rel: str, dest: Path) -> None:
        h = hashlib.sha256()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with os.fdopen(bundle_files.open_file(self.root, rel), "rb") as src, open(target, "xb") as out:
                while block := src.read(1 << 20):
                    h.update(block)
                    out.write(block)
        except OSError as e:
            raise self.error(f"{rel} cannot be read", str(e)) from e
        self._compare(rel, h.hexdigest())

    def encoder_io(self):
        """The encoder graph's IO (`GraphIO`); BundleError when the bundle was built from features only."""
        if "encoder" not in self.graphs or "encoder" not in self.io.graphs:
            raise self.error(
                "no encoder graph",
                "the bundle was built from features only, so it scores features "
                "(score_features) but cannot encode skeleton windows",
            )
        return self.io.graphs["encoder"]

    def error(self, what: str, why: str) -> BundleError:
        return bundle_error(self.root, what, why, self.rebuild_command)

    def check_plan(self, plan: dict, trt_version: str, gpu_name: str, compute_capability) -> None:
        """`check_plan_compat` with this bundle's rebuild command."""
        check_plan_compat(plan, trt_version, gpu_name, compute_capability, self.rebuild_command)


def bundle_error(root: Path | str, what: str, why: str, command: str | None, cls=BundleError) -> BundleError:
    """'<bundle>: <what>: <why>. <how to fix>' on one line, with the rebuild command (or how to build one)."""
    fix = (
        f"Rebuild the bundle with: {command}"
        if command
        else "Build a bundle with: python -m export.build_engine --run runs/<name> --out " + str(root)
    )
    return cls(f"engine bundle {str(root)!r}: {what}: {why}. {fix}")


def load_manifest(
    bundle_dir: str | Path,
    check_files: bool = True,
    *,
    digest: str | None = None,
    public_key=None,
    manifest_file: str = MANIFEST,
) -> Manifest:
    """Read `bundle_dir/manifest.json` and check it (see the module docstring) before anything else is read.

    Args:
        bundle_dir: the bundle folder.
        check_files: also check the folder's content and every file's sha256 (False: the manifest only).
        digest: the bundle digest to insist on ("sha256:…", as the build printed it): pins this exact build.
        public_key: an Ed25519 public key (path, PEM / OpenSSH bytes or 32 raw bytes): manifest.sig must be
            a valid signature of the bundle digest by it (needs the `cryptography` package).
        manifest_file: the manifest's file name (the build checks its staged manifest under another name).
    Raises:
        BundleError: naming the file or field, why it is refused, and the rebuild command.
        InputError: `bundle_dir`, `digest` or `public_key` is not of a usable type or form.
    """
    pinned = check_pinned_digest(digest) if digest is not None else None
    root = _bundle_root(bundle_dir, manifest_file)
    data = _read_json(root, manifest_file)
    command = _command(data)
    fail = lambda what, why: bundle_error(root, what, why, command)  # noqa: E731
    if data.get("format") != FORMAT:
        raise fail(f"{MANIFEST} is not a {FORMAT} manifest", f"its format field is {_short(data.get('format'))}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        older = isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION
        raise fail(
            f"manifest schema version {_short(version)}",
            f"this code reads schema version {SCHEMA_VERSION} "
            f"only ({'an older' if older else 'another'} bundle format)",
        )
    recorded, actual = data.get(DIGEST_FIELD), manifest_digest(data)
    if recorded != actual:
        raise fail(
            f"{MANIFEST} was changed after the build",
            f"its content digest is {actual[:19]}…, the digest it "
            f"records is {_short(recorded)} (every field is covered: class names, preprocessing, thresholds, "
            "file hashes); restore the original file",
        )
    if pinned is not None and actual != pinned:
        raise fail(
            "it is not the pinned build",
            f"its digest is {actual}, the caller pinned {pinned}; load the "
            "bundle that digest names, or pin this one if it is the intended build",
        )
    if public_key is not None:
        sig = _read_signature(root)
        verify_signature(sig, actual, public_key, f"engine bundle {str(root)!r}", f"rebuild or re-sign it: {command}")
    problems = MANIFEST_SCHEMA.errors(data, "manifest")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise fail(f"{MANIFEST} does not follow the bundle schema", "; ".join(problems[:3]) + more)
    try:
        manifest = Manifest(root, data, IOSpec.from_dict(data["io"]))
    except BundleError as e:
        raise fail("the IO spec", str(e)) from e
    except (ValueError, TypeError) as e:  # ConfigError from an axis range or a tensor
        raise fail("the IO spec", str(e)) from e
    _check_consistency(manifest)
    if check_files:
        check_files_sha256(manifest, allowed=(manifest_file, SIGNATURE_FILE))
    return manifest


def _bundle_root(bundle_dir, manifest_file: str) -> Path:
    if isinstance(bundle_dir, bytes) or not isinstance(bundle_dir, (str, os.PathLike)):
        raise InputError(
            f"a bundle is loaded from its folder path (str or Path), got {type(bundle_dir).__name__} "
            f"{_short(bundle_dir)}; e.g. ZeroShotRecognizer.load('engines/demo')"
        )
    given = Path(bundle_dir)
    if not str(bundle_dir).strip():
        raise InputError("the bundle folder path is empty; e.g. ZeroShotRecognizer.load('engines/demo')")
    try:
        real = given.resolve()  # the folder itself may be a symlink (engines/current -> engines/v3)
        is_dir, exists = real.is_dir(), real.exists()
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
        raise bundle_error(given, "not an engine bundle", f"the path cannot be resolved ({e})", None) from e
    temp = TEMP_FOLDER.match(real.name)
    if temp and manifest_file == MANIFEST:
        raise bundle_error(
            given,
            "not an engine bundle",
            f"it is the temporary folder of an unfinished or interrupted "
            f"build of {temp['name']!r} (the next build there deletes it)",
            None,
        )
    if not is_dir:
        why = "the folder does not exist" if not exists else "it is a file, not a folder"
        raise bundle_error(given, "not an engine bundle", why, None)
    return given


def _read_json(root: Path, name: str) -> dict:
    """The manifest as a dict: a regular file (no symlink), at most MAX_MANIFEST_BYTES, strict json (no
    NaN / Infinity, no repeated keys)."""
    try:
        raw = bundle_files.read_file(root, name, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise bundle_error(root, "not an engine bundle", f"it has no {MANIFEST}", None) from None
    except OSError as e:
        raise bundle_error(root, f"{MANIFEST} cannot be read", str(e), None) from e

    def no_constants(c: str):
        raise ValueError(f"{c} is not a json number")

    def finite(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"{text[:20]} is out of the range of a float")
        return v

    def no_repeats(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"repeated keys {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    try:
        data = json.loads(
            raw.decode("utf-8"), parse_constant=no_constants, parse_float=finite, object_pairs_hook=no_repeats
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bundle_error(root, f"{MANIFEST} is not valid json", f"{type(e).__name__}: {str(e)[:200]}", None) from e
    if _depth(data) > MAX_DEPTH:
        raise bundle_error(
            root, f"{MANIFEST} is not a {FORMAT} manifest", f"it nests deeper than {MAX_DEPTH} levels", None
        )
    if not isinstance(data, dict):
        raise bundle_error(root, f"{MANIFEST} is not a {FORMAT} manifest", "it is not a json object", None)
    return data


def _depth(value) -> int:
    """How deeply a json value nests (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if d <= MAX_DEPTH and isinstance(v, (dict, list)):
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _read_signature(root: Path) -> bytes | None:
    try:
        return bundle_files.read_file(root, SIGNATURE_FILE, 1 << 16)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise bundle_error(root, f"{SIGNATURE_FILE} cannot be read", str(e), None) from e


def _command(data: dict) -> str | None:
    build = data.get("build")
    cmd = build.get("command") if isinstance(build, dict) else None
    return cmd if isinstance(cmd, str) and cmd.strip() and "\n" not in cmd else None


def _short(v) -> str:
    s = v if isinstance(v, str) and v.startswith("sha256:") else repr(v)
    return s if len(s) <= 80 else s[:77] + "…"


def _check_variant(m: Manifest, tables: list[str]) -> None:
    """model.denoiser names a variant (attention) and depth whose class tables are the scorer's inputs."""
    den = m.data["model"]["denoiser"]
    attention, depth = den.get("attention", JOINT), den.get("depth")
    if attention not in (JOINT, DECOUPLED):
        raise m.error("model.denoiser.attention", f"{_short(attention)} is not one of {[JOINT, DECOUPLED]}")
    if type(depth) is not int or not 1 <= depth <= 1024:
        raise m.error("model.denoiser.depth", f"{_short(depth)} is not a whole number of blocks from 1 to 1024")
    want = list(table_names(depth, attention))
    if want != tables:
        raise m.error(
            "model.denoiser",
            f"a {attention} denoiser of depth {depth} reads the class tables {want}, but the scorer's IO spec "
            f"reads {tables}",
        )


def _check_consistency(m: Manifest) -> None:
    """What the schema cannot say alone: fields that must agree with each other."""
    data, io = m.data, m.io
    names = m.class_names
    if "scorer" not in data["graphs"] or "scorer" not in io.graphs:
        raise m.error("the scorer graph", "the manifest lists no scorer graph or no IO spec for it")
    unspecified = sorted(set(data["graphs"]) - set(io.graphs))
    if unspecified:
        raise m.error(f"the graphs {unspecified}", "they have no entry in the IO spec")
    classes = io.axes.get(CLASSES)
    if classes is None or classes.max < len(names) or classes.opt != len(names):
        raise m.error(
            "the IO spec's class axis",
            f"its opt/max are {classes.opt if classes else None}/"
            f"{classes.max if classes else None} but the bundle lists {len(names)} classes",
        )
    tables = [t.name for t in io.graphs["scorer"].inputs[1:]]
    if list(data["tables"]["names"]) != tables:
        raise m.error(
            "the class tables", f"tables.npz holds {data['tables']['names']} but the scorer's IO spec reads {tables}"
        )
    _check_variant(m, tables)
    for what, values in (
        ("classes.indices", data["classes"].get("indices")),
        ("classes.descriptions", data["classes"].get("descriptions")),
    ):
        if values is not None and len(values) != len(names):
            raise m.error(what, f"it has {len(values)} entries for {len(names)} classes")
    _check_skeleton(m)
    listed = set(data["files"])
    needed = [f for g in data["graphs"].values() for f in (g["file"], *g["files"])] + [data["tables"]["file"]]
    if any(g["file"] not in g["files"] for g in data["graphs"].values()):
        raise m.error("the graphs", "a graph's file is not among its files")
    text_side = [g for g in (TABLES_GRAPH, TEXT_GRAPH) if g in data["graphs"]]
    if text_side:
        runtime = data["text"].get("runtime")
        if len(text_side) != 2 or not isinstance(runtime, dict):
            raise m.error(
                "the text side",
                f"it has the graphs {text_side} and text.runtime "
                f"{'set' if runtime else 'missing'}; add_classes needs both graphs and text.runtime",
            )
        want = [(t.name, t.dims) for t in io.graphs["scorer"].inputs[1:]]
        got = [(t.name, t.dims) for t in io.graphs[TABLES_GRAPH].outputs]
        if got != want:
            raise m.error("the tables graph", f"it writes {got} but the scorer reads the tables {want}")
        needed.append(runtime["vocab"])
    needed += [p["file"] for p in data["plans"]]
    needed += [v for k, v in (data.get("reference") or {}).items() if v and k != "denoiser" and k != "encoder"]
    for folder in ("denoiser", "encoder"):
        ref = (data.get("reference") or {}).get(folder)
        if ref:
            needed += [f"{ref}/model.safetensors", f"{ref}/config.json"]
    unlisted = sorted({f for f in needed if f not in listed})
    if unlisted:
        raise m.error(f"the files {unlisted}", "they are used but have no sha256 in the manifest")
    unused = sorted(listed - set(needed))
    if unused:  # e.g. an external-data file no graph record names: it would be read without being accounted for
        raise m.error(f"the files {unused}", "they are listed but no graph, table, plan or weights entry uses them")
    open_set = data.get("open_set")
    if open_set is not None and open_set["num_classes"] > classes.max:
        raise m.error("open_set.num_classes", f"{open_set['num_classes']} is more classes than the bundle can hold")


def _check_skeleton(m: Manifest) -> None:
    """The layout's joint indices lie inside the layout; the preprocessing needs a layout."""
    sk = m.data["skeleton"]
    layout = sk.get("layout")
    if sk.get("preprocess") and layout is None:
        raise m.error("skeleton.preprocess", "it needs skeleton.layout (which joints the windows hold)")
    if layout is None:
        return
    V = len(layout["joint_names"])
    bad = [
        f"skeleton.layout.{k}"
        for k, idx in (
            ("center_joint", [layout["center_joint"]]),
            ("bones", [j for b in layout["bones"] for j in b]),
            ("mirror_pairs", [j for p in layout["mirror_pairs"] for j in p]),
        )
        if any(j >= V for j in idx)
    ]
    if bad:
        raise m.error(", ".join(bad), f"they name joints beyond the layout's {V}")


def check_files_sha256(m: Manifest, allowed: tuple[str, ...] = bundle_files.ALLOWED_UNLISTED) -> None:
    """The folder holds exactly the listed files (regular files, no symlinks, nothing else but `allowed`),
    and each hashes to its recorded sha256 (BundleError otherwise). Nothing is read before the scan passed."""
    problems = bundle_files.scan(m.root, set(m.data["files"]), allowed)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise m.error(
            "the folder's content",
            "; ".join(problems[:3]) + more + " — a bundle holds only the files "
            f"its manifest lists (plus {', '.join(allowed)}), so nothing outside it is ever read",
        )
    for rel in m.data["files"]:
        m.verify_file(rel)


def load_tables(m: Manifest) -> dict[str, np.ndarray]:
    """The class tables as float32 arrays, name → (K, ...), checked against the scorer's IO spec.

    tables.npz must hold exactly the scorer's tables; each member's declared size is checked before it
    is decompressed, and its header (shape, dtype) before its data is read, so a crafted archive cannot
    make the loader inflate gigabytes."""
    rel = m.data["tables"]["file"]
    K = len(m.class_names)
    spec = m.io.graphs["scorer"]
    want = {t.name: t.shape({CLASSES: K}) for t in spec.inputs[1:]}
    tables = {}
    try:
        with zipfile.ZipFile(BytesIO(m.read_bytes(rel))) as zf:
            members = sorted(zf.namelist())
            if members != sorted(f"{n}.npy" for n in want):
                raise m.error(
                    f"{rel}", f"it holds {members[:8]}, the scorer reads exactly {sorted(f'{n}.npy' for n in want)}"
                )
            for name, shape in want.items():
                limit = 8 * math.prod(shape) + 4096  # float64 at most, plus the .npy header
                if zf.getinfo(f"{name}.npy").file_size > limit:
                    raise m.error(
                        f"class table {name!r}", f"it unpacks to more than the {limit:,} bytes a {shape} table takes"
                    )
                with zf.open(f"{name}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    got, _, dtype = (
                        np.lib.format.read_array_header_1_0(f)
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0(f)
                    )
                    if tuple(got) != shape or dtype.kind != "f" or dtype.itemsize > 8:
                        raise m.error(
                            f"class table {name!r}",
                            f"it is {dtype} {tuple(got)} in {rel}, the IO spec says float {shape}",
                        )
                with zf.open(f"{name}.npy") as f:
                    tables[name] = np.lib.format.read_array(f, allow_pickle=False).astype(np.float32, copy=False)
    except BundleError:
        raise
    except Exception as e:  # zipfile / ValueError / EOFError: name the file
        raise m.error(f"{rel} cannot be read", f"{type(e).__name__}: {e}") from e
    bad = [n for n, t in tables.items() if not np.isfinite(t).all()]
    if bad:
        raise m.error(f"class tables {bad}", "they hold NaN or infinite values")
    return tables


def check_plan_compat(
    plan: dict,
    trt_version: str,
    gpu_name: str,
    compute_capability,
    rebuild_command: str | None = None,
    strict_gpu: bool = True,
) -> None:
    """Refuse a TensorRT plan built with another TensorRT version, on another GPU model or compute capability.

    A plan deserializes only on the exact TensorRT version that built it, holds kernels for one
    compute capability, and its tactics were timed on one GPU model, so all three must match; every
    mismatch is listed. No TensorRT import.

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

    checks = [
        ("TensorRT version", plan.get("tensorrt_version"), trt_version, str),
        ("compute capability", plan.get("compute_capability"), compute_capability, cc),
        ("GPU", plan.get("gpu_name"), gpu_name, gpu),
    ]
    problems = [
        f"{what}: the plan was built with {want if want is not None else '(not recorded)'}, this machine has {have}"
        for what, want, have, norm in checks
        if want is None or norm(want) != norm(have)
    ]
    name = plan.get("file", "(unnamed)")
    if (
        problems
        and not strict_gpu
        and len(problems) == 1
        and problems[0].startswith("GPU:")
        and plan.get("gpu_name") is not None
    ):
        log.warning(
            "TensorRT plan %s: %s; it loads (same compute capability) but was tuned for the other GPU. "
            "Rebuild for best speed: %s",
            name,
            problems[0],
            rebuild_command,
        )
        return
    if problems:
        raise EngineIncompatibleError(
            f"the TensorRT plan {name} cannot run here:\n  - "
            + "\n  - ".join(problems)
            + "\nPlans are specific to the TensorRT version and the GPU that built them. "
            f"Rebuild it on this machine with:\n  {rebuild_command}"
        )
