"""Zero-shot action recognition from an engine bundle: skeleton window in, class label out.

    rec = ZeroShotRecognizer.load("engines/demo")       # manifest + sha256 checked before anything runs
    pred = rec.predict(window)                           # (T, V, 3) or (M, T, V, 3) float camera coordinates
    pred.label, pred.index, pred.errors, pred.margin     # errors: (K,) float32, lower = more likely
    rec.set_active_classes(["wave", "kick"])            # a subset of the bundle's classes, nothing rebuilt

A window goes through `tdsm_edge.skeleton.preprocess.preprocess` (the function training used) with
the manifest's window length, layout and view alignment, then the bundle's encoder graph (→ raw
features z), then its scorer graph (→ per-class errors). numpy + the backend only: never torch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.skeleton.layout import SkeletonLayout
from tdsm_edge.skeleton.preprocess import preprocess, preprocess_batch

from .backends import Backend, Encoder, open_backend
from .class_set import Snapshot
from .manifest import Manifest, load_manifest
from .manifest_schema import NONE_LABEL  # the open-set answer (see ZeroShotRecognizer.set_open_set)

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Prediction:
    """One window's result. `index` and `errors` refer to the recognizer's active classes (`rec.classes`)."""

    label: str  # the most likely class (lowest error)
    index: int  # its column in `errors` / position in `classes`
    errors: np.ndarray = field(repr=False)  # (K,) float32 per-class errors, lower = more likely
    margin: float  # second-lowest minus lowest error (>= 0; inf with one class)
    latency_ms: float  # wall time of the call that produced it (a batch: the whole call)
    classes: tuple[str, ...] = field(repr=False, default=())  # the K class names, in score order
    known: bool = True  # False: open set on and margin below threshold → "none of these"

    def topk(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most likely classes as (name, error), best first (k is capped at K)."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise InputError(f"topk(k) needs a positive int k, got {k!r}")
        order = np.argsort(self.errors, kind="stable")[:k]
        return [(self.classes[i], float(self.errors[i])) for i in order]


class ZeroShotRecognizer:
    """A loaded engine bundle: preprocessing, encoder and scorer. Build it with `ZeroShotRecognizer.load`."""

    _text = None  # the OrtTextEncoder, opened by the first add_classes

    def __init__(self, manifest: Manifest, scorer: Backend, encoder: Encoder | None, backend: str) -> None:
        self.manifest, self.backend = manifest, backend
        self.open_set_threshold: float | None = None  # set_open_set(); None = always name a class
        self._scorer, self._encoder = scorer, encoder
        pre = (manifest.data.get("skeleton") or {}).get("preprocess")
        self._pre = None
        if encoder is not None:
            if not pre:
                raise manifest.error(
                    "the skeleton preprocessing",
                    "the bundle has an encoder graph but its manifest records no preprocessing parameters",
                )
            self._pre = _preprocessing(manifest, pre, encoder.window_shape)

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        backend: str = "auto",
        threads: int | None = None,
        providers: str | Sequence[str] = "auto",
        device: str = "auto",
        cuda_graph: bool = False,
        *,
        digest: str | None = None,
        public_key=None,
    ) -> ZeroShotRecognizer:
        """Load and check an engine bundle.

        Args:
            bundle_dir: an engine bundle folder (`engines/<name>`).
            backend: "auto" (TensorRT > ONNX Runtime > PyTorch: the first that can run the bundle
                here), "tensorrt", "onnxruntime" or "torch".
            threads: CPU threads (default: the cores available).
            providers: ONNX Runtime execution providers (see `ort_backend.resolve_providers`).
            device: PyTorch device ("auto": CUDA when available, else CPU).
            cuda_graph: TensorRT / PyTorch on CUDA: capture the call shape in a CUDA graph and replay it (TensorRT:
                one graph per context, re-captured when B or the active class count changes).
            digest: the bundle digest the build printed ("sha256:…"): refuse any other bundle (pins the build).
            public_key: an Ed25519 public key (path to the .pub file, its bytes, or 32 raw bytes): the bundle
                must carry a valid signature by it (manifest.sig; `python -m export.signing`). Needs the
                `cryptography` package.
        Raises:
            BundleError: the bundle is missing, tampered with (digest, sha256, schema, unlisted or symlinked
                files), not the pinned build or not signed by the key; nothing is run.
            ConfigError: an unknown backend, or one that cannot run this bundle here.
            InputError: an argument of the wrong type or out of range.
            MissingDependencyError: the named backend's package is not installed.
        """
        check_load_arguments(
            backend=backend, threads=threads, device=device, cuda_graph=cuda_graph, providers=providers
        )
        # checks the manifest's digest, schema and every file (no symlinks, nothing unlisted, sha256) first
        manifest = load_manifest(bundle_dir, digest=digest, public_key=public_key)
        name, scorer, encoder = open_backend(
            manifest, backend, threads=threads, providers=providers, device=device, cuda_graph=cuda_graph
        )
        rec = cls(manifest, scorer, encoder, name)
        log.info(
            "recognizer %s: %d classes, encoder %s, %s on %s",
            manifest.root,
            len(rec.classes),
            "yes" if encoder else "no",
            name,
            scorer.device,
        )
        return rec

    @property
    def digest(self) -> str:
        """The bundle digest ("sha256:…"): pin it with `load(path, digest=...)`."""
        return self.manifest.digest

    @property
    def variant(self) -> str:
        """The bundle's denoiser: "joint" (TDSM as published) or "decoupled" (the distilled student)."""
        return self.manifest.variant

    # ------------------------------------------------------------ classes
    @property
    def classes(self) -> list[str]:
        """The active class names, in score order."""
        return self._scorer.class_set.names

    @property
    def all_classes(self) -> list[str]:
        """Every class the recognizer holds (the bundle's, then any added), in table order."""
        return self._scorer.class_set.all_names

    def set_active_classes(self, names: Sequence[str] | None) -> list[str]:
        """Score only `names` (a subset of `all_classes`, in the order given); None = every class.

        Takes the class-table rows of those classes; nothing is rebuilt. Returns the active names.
        """
        if names is None:
            return self._scorer.class_set.select(None)
        given = names
        try:  # read once: a generator would be empty on a second pass; an int is not iterable at all
            unordered = isinstance(names, (str, set, frozenset, dict)) or type(names).__name__.endswith("View")
            names = None if unordered else list(names)
        except TypeError:
            names = None
        if names is None or not all(isinstance(n, str) for n in names):
            shown = repr(given) if len(repr(given)) < 80 else repr(given)[:77] + "…"
            raise InputError(
                f"set_active_classes takes a list of class names in score order, e.g. "
                f"['{self.all_classes[0]}'] (not a set or dict: their order is arbitrary), got {shown}"
            )
        return self._scorer.class_set.select(names)  # unknown, repeated or no names: InputError

    def add_classes(self, names: Sequence[str], descriptions: Sequence[str] | None = None) -> list[str]:
        """Add classes from their text alone (zero-shot: no skeleton samples), scored after the active ones.

        The bundle's text graph encodes each prompt set ("label" = the name, "description" = the
        sentence) and its tables graph turns that into class-table rows, as training did for the
        bundle's own classes; they run on ONNX Runtime (CPU) whatever the scoring backend.

        Args:
            names: N new class names, e.g. ["wave twice"].
            descriptions: N sentences describing each motion, e.g. ["A person waves the right hand twice."];
                required when the bundle's prompt sets include "description" (the default), and not
                taken when they do not.
        Returns:
            The active class names (the previous ones, then the N new ones).
        Raises:
            ConfigError: the bundle has no text graph (built with --no-text-encoder): rebuild it.
            InputError: empty, repeated or existing names, non-strings, a missing description or a
                length mismatch.
            MissingDependencyError: onnxruntime is not installed.
        """
        from .text_encoder import check_new_classes, has_text_side, no_text_side_error

        if not has_text_side(self.manifest):
            raise no_text_side_error(self.manifest)
        existing = self.all_classes
        names, descriptions = check_new_classes(
            names,
            descriptions,
            self.manifest.data["text"]["prompt_sets"],
            existing,
            room=self._scorer.class_set.max_classes - len(existing),
        )
        tables = self._text_side().class_tables(names, descriptions)  # name -> (N, ...) float32
        active = self._scorer.class_set.add(names, tables)
        if self.open_set_threshold is not None:
            log.warning(
                "the open-set threshold %.4g was set for another class set; %d classes are active now, so "
                "its rejection rate will differ",
                self.open_set_threshold,
                len(active),
            )
        return active

    def _text_side(self):
        """The bundle's OrtTextEncoder, opened on first use (its MiniLM graph is ~90 MB: not loaded before)."""
        if self._text is None:
            from .text_encoder import OrtTextEncoder

            self._text = OrtTextEncoder(self.manifest)
        return self._text

    def set_open_set(self, enabled: bool = True, threshold: float | None = None) -> float | None:
        """Answer "none of these" (label NONE_LABEL, index -1, known False) when the best class does not
        stand out: margin (second-lowest minus lowest error) below a threshold.

        Args:
            enabled: False turns it off (every prediction names a class).
            threshold: a margin in this bundle's error units; None = the threshold calibrated at export
                on held-out data (manifest "open_set"), for the bundle's full class set.
        Returns:
            The threshold in use, or None when off.
        """
        if not isinstance(enabled, (bool, np.bool_)):
            raise InputError(
                f"set_open_set(enabled) takes True or False, got {type(enabled).__name__} {enabled!r}; "
                "pass threshold=... for a margin"
            )
        if not enabled:
            self.open_set_threshold = None
            return None
        if threshold is None:
            rec = self.manifest.data.get("open_set")
            if not rec:
                raise ConfigError(
                    f"the bundle {str(self.manifest.root)!r} has no calibrated open-set threshold (it "
                    "was built with --no-verify or without held-out data); pass threshold=..., or "
                    f"rebuild it: {self.manifest.rebuild_command}"
                )
            threshold = rec["threshold"]
            if len(self.classes) != rec.get("num_classes", len(self.classes)):
                log.warning(
                    "the open-set threshold was calibrated for %s classes; %d are active now, so the "
                    "rejection rate will differ",
                    rec["num_classes"],
                    len(self.classes),
                )
        try:
            value = None if isinstance(threshold, bool) else float(threshold)
        except (TypeError, ValueError, OverflowError):
            value = None
        if (
            value is None
            or not isinstance(threshold, (int, float, np.floating, np.integer))
            or not math.isfinite(value)
            or value < 0
        ):
            raise InputError(f"threshold must be a finite margin >= 0 (error units), got {str(threshold)[:40]!r}")
        threshold = value
        self.open_set_threshold = float(threshold)
        return self.open_set_threshold

    # ------------------------------------------------------------ inference
    def score_features(self, z: np.ndarray) -> np.ndarray:
        """Per-class errors of raw skeleton features.

        Args:
            z: `(B, Dz)` float raw encoder features (the scorer standardises them).
        Returns:
            `(B, K) float32` errors over the active classes; lower = more likely.
        Raises:
            InputError: not a `(B, Dz)` float array, NaN/Inf values, or values so large the scorer overflows.
        """
        try:
            z = np.asarray(z)
        except (TypeError, ValueError) as e:
            raise InputError(f"z cannot be read as an array ({e}); pass a (B, Dz) float array") from e
        if z.dtype.kind == "f" and not np.isfinite(z).all():
            raise InputError("z contains NaN or infinite values; features come from the encoder and must be finite")
        snap = self._scorer.class_set.snapshot()  # the columns are this snapshot's classes, whatever other threads do
        return _finite(
            self._scorer.errors(z, snap),
            lambda i: f"z[{i}] (largest |value| {np.abs(z[i]).max():.3g})",
            "features come from this bundle's encoder (a few units in size)",
        )

    def predict(self, window: np.ndarray) -> Prediction:
        """Recognize one window.

        Args:
            window: `(T, V, 3)` (one body) or `(M, T, V, 3)` float camera coordinates in the bundle's
                joint layout; a joint at exactly 0 is missing. float64 and non-contiguous arrays are fine.
        Returns:
            A Prediction over the active classes.
        Raises:
            InputError: wrong shape, joint count or dtype, NaN/Inf, an all-zero window, or coordinates so
                large (finite, e.g. 1e38) that the graphs overflow to NaN/Inf errors.
        """
        start = time.perf_counter()
        x = self._check_window(window, "window")  # (M, T, V, 3) float32
        pre = self._preprocessing()
        x = preprocess(x, pre.frames, pre.layout, pre.align_view)  # (3, T', V, 2)
        return self._predictions(x[None], start)[0]

    def predict_batch(self, windows) -> list[Prediction]:
        """Recognize several windows: a list of `(T, V, 3)` / `(M, T, V, 3)` arrays (any T each) or
        one `(B, M, T, V, 3)` array. Returns one Prediction per window, in order."""
        start = time.perf_counter()
        pre = self._preprocessing()
        if isinstance(windows, np.ndarray):
            if windows.ndim != 5:
                raise InputError(
                    f"predict_batch takes a (B, M, T, V, 3) array or a list of windows, got an array of "
                    f"shape {windows.shape}; for one window use predict(), or stack windows on a new "
                    "first axis"
                )
            xs = [self._check_window(w, f"windows[{i}]") for i, w in enumerate(windows)]
            # (B, 3, T', V, 2); None for an empty (0, M, T, V, 3) batch, as for an empty list
            x = preprocess_batch(np.stack(xs), pre.frames, pre.layout, pre.align_view) if xs else None
        elif isinstance(windows, (list, tuple)):
            x = (
                np.stack(
                    [
                        preprocess(self._check_window(w, f"windows[{i}]"), pre.frames, pre.layout, pre.align_view)
                        for i, w in enumerate(windows)
                    ]
                )
                if windows
                else None
            )
        else:
            raise InputError(
                f"predict_batch takes a list of windows or a (B, M, T, V, 3) array, got {type(windows).__name__}"
            )
        return [] if x is None else self._predictions(x, start)

    def _predictions(self, x: np.ndarray, start: float) -> list[Prediction]:
        # ONE class-set snapshot and threshold for the whole call: the errors are computed over, and labelled
        # with, the same classes even while other threads select or add classes
        snap: Snapshot = self._scorer.class_set.snapshot()
        threshold = self.open_set_threshold
        z = self._encoder.features(x)  # (B, Dz)
        errors = _finite(
            self._scorer.errors(z, snap),  # (B, K)
            lambda i: f"window {i} (largest |centred coordinate| {np.abs(x[i]).max():.3g})",
            "coordinates are camera metres (a body spans about 2 m)",
        )
        ms = (time.perf_counter() - start) * 1e3
        return [_prediction(e, snap.names, ms, threshold) for e in errors]

    def _preprocessing(self) -> _Preprocessing:
        if self._pre is None:
            raise ConfigError(
                f"the bundle {str(self.manifest.root)!r} has no encoder graph (it was built from "
                "features), so it cannot take skeleton windows; use score_features(z)"
            )
        return self._pre

    def _check_window(self, window, what: str) -> np.ndarray:
        """`window` as a contiguous `(M, T, V, 3)` float32 array, or InputError saying what/why/fix."""
        pre = self._preprocessing()
        V = pre.layout.num_joints
        want = f"(T, {V}, 3) or (M, T, {V}, 3) float camera coordinates in the {pre.layout.name!r} layout"
        try:
            a = np.asarray(window)
        except (TypeError, ValueError) as e:
            raise InputError(f"{what} cannot be read as an array ({e}); pass a numpy array shaped {want}") from e
        if a.dtype.kind != "f":
            raise InputError(
                f"{what} has dtype {a.dtype}, but coordinates must be floats (float32 or float64); "
                f"convert with np.asarray({what}, np.float32) if they really are coordinates"
            )
        if a.ndim not in (3, 4):
            raise InputError(
                f"{what} has shape {a.shape} ({a.ndim} dims), expected {want}. For several windows use predict_batch"
            )
        if a.ndim == 3:
            a = a[None]  # (1, T, V, 3)
        M, T, Vg, C = a.shape
        if C != 3:
            raise InputError(f"{what} has shape {a.shape}: the last axis must be the 3 coordinates (x, y, z), got {C}")
        if Vg != V:
            raise InputError(
                f"{what} has {Vg} joints but this bundle's layout {pre.layout.name!r} has {V} "
                f"({', '.join(pre.layout.joint_names[:3])}, …); reorder or map the joints to it"
            )
        if M == 0 or T == 0:
            raise InputError(f"{what} is empty (shape {a.shape}): it needs at least one body and one frame")
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32's range → inf, refused below
            a = np.ascontiguousarray(a, np.float32)  # a copy when float64 or non-contiguous
        bad = ~np.isfinite(a)
        if bad.any():
            raise InputError(
                f"{what} has {int(bad.sum())} NaN or infinite coordinates; mark untracked joints with "
                "exact zeros (0, 0, 0) instead"
            )
        if not a.any():
            raise InputError(
                f"{what} is all zeros: no joint is tracked in any frame (a joint at exactly (0, 0, 0) "
                "means missing), so there is nothing to recognize; skip windows without a skeleton"
            )
        return a


MAX_THREADS_PER_CORE = 4  # threads= above cores × this is refused (a typo like 10**6 would stall the machine)


def check_load_arguments(backend, threads, device, cuda_graph, providers="auto") -> None:
    """InputError for a `load` argument of the wrong type or range (before anything is read)."""
    from .backends import BACKENDS
    from .ort_backend import PROVIDERS, num_cores

    if not (
        providers == "auto" or providers in PROVIDERS
        if isinstance(providers, str)
        else isinstance(providers, (list, tuple)) and providers and all(isinstance(p, str) for p in providers)
    ):
        raise InputError(
            f"providers must be 'auto', one of {sorted(PROVIDERS)} or a non-empty list of ONNX Runtime "
            f"provider names, got {providers!r}"
        )
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    limit = MAX_THREADS_PER_CORE * num_cores()
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= limit
    ):
        raise InputError(f"threads must be None (all {num_cores()} cores) or an int in [1, {limit}], got {threads!r}")
    if not isinstance(device, str) or not device or any(c.isspace() or not c.isprintable() for c in device):
        raise InputError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {device!r}")
    if not isinstance(cuda_graph, (bool, np.bool_)):
        raise InputError(f"cuda_graph must be True or False, got {cuda_graph!r}")


@dataclass(frozen=True)
class _Preprocessing:
    frames: int
    layout: SkeletonLayout
    align_view: bool


def _preprocessing(m: Manifest, pre: dict, window_shape: tuple[int, ...]) -> _Preprocessing:
    """The manifest's preprocessing parameters, checked against the encoder graph's input `(3, T, V, M)`."""
    try:
        d = m.data["skeleton"]["layout"]
        layout = SkeletonLayout(
            str(d["name"]),
            tuple(d["joint_names"]),
            tuple(tuple(b) for b in d["bones"]),
            int(d["center_joint"]),
            tuple(tuple(p) for p in d["mirror_pairs"]),
        )
        p = _Preprocessing(int(pre["frames"]), layout, bool(pre.get("align_view", False)))
        fn, bodies = pre.get("function"), int(pre.get("num_bodies", 2))
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise m.error("the skeleton layout / preprocessing", f"malformed ({type(e).__name__}: {e})") from e
    if fn not in (None, "tdsm_edge.skeleton.preprocess.preprocess"):
        raise m.error(
            "the skeleton preprocessing",
            f"it names {fn!r}, this runtime implements tdsm_edge.skeleton.preprocess.preprocess only",
        )
    want = (3, p.frames, layout.num_joints, bodies)
    if tuple(window_shape) != want:
        raise m.error(
            "the encoder graph's input", f"it takes windows {tuple(window_shape)} but the preprocessing gives {want}"
        )
    return p


def _finite(errors: np.ndarray, which, fix: str) -> np.ndarray:
    """`errors (B, K)` as given, or InputError when a row is NaN/Inf: finite but extreme inputs overflow the graphs."""
    bad = np.flatnonzero(~np.isfinite(errors).all(axis=1))
    if bad.size:
        raise InputError(
            f"{which(int(bad[0]))} gave NaN or infinite class errors: its values are so large that the "
            f"model overflows ({bad.size} of {len(errors)} rows); {fix}"
        )
    return errors


def _prediction(errors: np.ndarray, names: tuple[str, ...], ms: float, threshold: float | None = None) -> Prediction:
    """A Prediction from one row of errors over `names` (the same class snapshot), with the open-set rule."""
    assert len(errors) == len(names), "errors and class names come from different class sets"
    errors = np.array(errors, np.float32)  # (K,) a private copy
    errors.setflags(write=False)
    order = np.argsort(errors, kind="stable")[:2]
    best = int(order[0])
    margin = float(errors[order[1]] - errors[best]) if len(order) > 1 else float("inf")
    if threshold is not None and margin < threshold:
        return Prediction(NONE_LABEL, -1, errors, margin, ms, names, known=False)
    return Prediction(names[best], best, errors, margin, ms, names)


__all__ = ["NONE_LABEL", "Prediction", "ZeroShotRecognizer"]
