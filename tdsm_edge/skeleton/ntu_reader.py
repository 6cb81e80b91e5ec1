"""Reader for NTU RGB+D 60/120 `.skeleton` text files, numpy only (no torch).

    from tdsm_edge.skeleton.ntu_reader import parse_sample_name, read_skeleton, select_bodies

    xyz = read_skeleton("S001C002P003R002A013.skeleton")   # (B, T, 25, 3) float32, one row per body ID
    seq = select_bodies(xyz)                                # (2, T, 25, 3): the two most active bodies

File layout (one record per line, whitespace-separated; see shared/data/ntu/ntu_skeleton_format.md):
line 1 is the frame count F; each frame holds a body count B (may be 0), then per body a 10-value
info line (bodyID first), a joint count line (always 25) and 25 joint lines of 12 values (x y z first,
camera space in metres). A malformed file raises DataError naming the file, the 1-based line and what
was expected there.

Bodies are tracked by their Kinect bodyID across frames (as CTR-GCN does), not by their position in
each frame's list (as ST-GCN does): a person listed second in one frame and first in the next stays
in one track. A body absent from a frame has all-zero joints there, the preprocessing convention
for "missing" (`tdsm_edge.skeleton.preprocess`). Frames with no body stay in the sequence, all zero
(ST-GCN keeps them too); preprocessing trims empty frames at either end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError

NUM_JOINTS = 25  # Kinect v2 joints per body, in JointType order (layout "ntu25")
BODY_INFO_FIELDS = (
    "bodyID",
    "clipedEdges",
    "handLeftConfidence",
    "handLeftState",
    "handRightConfidence",
    "handRightState",
    "isResticted",
    "leanX",
    "leanY",
    "trackingState",
)  # spelling as published
JOINT_FIELDS = (
    "x",
    "y",
    "z",
    "depthX",
    "depthY",
    "colorX",
    "colorY",
    "orientationW",
    "orientationX",
    "orientationY",
    "orientationZ",
    "trackingState",
)
SAMPLE_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
NTU_DATASETS = {"ntu60": (17, 60), "ntu120": (32, 120)}  # name -> (last setup S, last action A)
_MISSING_DIR = Path(__file__).resolve().parent / "ntu_missing"
_MISSING_FILES = {
    "ntu60": "NTU_RGBD_samples_with_missing_skeletons_ids_only.txt",
    "ntu120": "NTU_RGBD120_samples_with_missing_skeletons_ids_only.txt",
}


@dataclass(frozen=True)
class SampleName:
    """The fields of an NTU sample name `SsssCcccPpppRrrrAaaa` (all 1-based, as written)."""

    setup: int  # S: setup (NTU-60: 1-17, NTU-120: 1-32)
    camera: int  # C: camera id (1-3)
    subject: int  # P: performer id
    replication: int  # R: replication (1 or 2)
    action: int  # A: action class, 1-based

    @property
    def label(self) -> int:
        """0-based class index (action - 1), the label every NTU pipeline stores."""
        return self.action - 1

    @property
    def name(self) -> str:
        """The canonical name, e.g. "S001C002P003R002A013"."""
        return f"S{self.setup:03d}C{self.camera:03d}P{self.subject:03d}R{self.replication:03d}A{self.action:03d}"


def parse_sample_name(name: str | Path) -> SampleName:
    """Parse `SsssCcccPpppRrrrAaaa`, also given as a file name or path ending in `.skeleton`.

    Raises:
        DataError: the name does not have that form.
    """
    stem = Path(name).name
    if stem.endswith(".skeleton"):
        stem = stem[: -len(".skeleton")]
    m = SAMPLE_NAME.fullmatch(stem)
    if m is None:
        raise DataError(
            f"{str(name)!r} is not an NTU RGB+D sample name: expected SsssCcccPpppRrrrAaaa with 3 "
            "digits per field, e.g. S001C002P003R002A013(.skeleton). Rename the file or remove it "
            "from the source folder."
        )
    return SampleName(*(int(g) for g in m.groups()))


@dataclass(frozen=True)
class SkeletonFile:
    """Everything `read_skeleton_file` keeps from one `.skeleton` file."""

    xyz: np.ndarray  # (B, T, 25, 3) float32 camera x y z in metres; 0 where the body is absent
    body_ids: tuple[str, ...]  # (B,) Kinect bodyID per track, in order of first appearance
    present: np.ndarray  # (B, T) bool: the body is listed in the frame
    bodies_per_frame: np.ndarray  # (T,) int64: number of bodies listed in each frame

    @property
    def num_frames(self) -> int:
        return int(self.bodies_per_frame.shape[0])


def read_skeleton(path: str | Path) -> np.ndarray:
    """Camera coordinates of every body track of a `.skeleton` file: `(B, T, 25, 3)` float32.

    B is the number of distinct bodyIDs (0 if no frame lists a body), T the file's frame count.

    Raises:
        DataError: unreadable, truncated or malformed file (the message names the file and line).
    """
    return read_skeleton_file(path).xyz


def read_skeleton_file(path: str | Path) -> SkeletonFile:
    """Parse a `.skeleton` file into per-body tracks plus body ids and presence (see SkeletonFile).

    Raises:
        DataError: unreadable, truncated or malformed file (the message names the file and line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read {str(path)!r}: {e.strerror or e}. Check that the file exists and is readable."
        ) from e
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}, line {line}: byte {raw[e.start]:#04x} is not ASCII; a .skeleton file is plain "
            "ASCII text. The file is corrupt or not an NTU skeleton file; re-extract it from the "
            "dataset archive."
        ) from e
    return _Parser(text.split("\n"), str(path)).parse()


class _Parser:
    """Walks the lines of one file; `i` is the 0-based index of the next line to read."""

    def __init__(self, lines: list[str], where: str):
        self.lines, self.where, self.i = lines, where, 0
        self.n = len(lines) - 1 if lines[-1] == "" else len(lines)  # a final newline ends the last line
        self.starts: list[int] = []  # first joint line of every body block read so far

    def fail(self, index: int, message: str) -> DataError:
        """The error for line `index`, unless a joint line before it is bad: errors come in file order."""
        self._joint_values([s for s in self.starts if s < index])
        return DataError(
            f"{self.where}, line {index + 1}: {message}. The file is truncated or corrupt; re-extract "
            "it from the NTU RGB+D archive (a dataset build skips it and lists it in bad_files.json)."
        )

    def eof(self, what: str) -> DataError:
        return self.fail(self.n, f"the file ends after line {self.n}, but {what} was expected here")

    def tokens(self, what: str) -> list[str]:
        if self.i >= self.n:
            raise self.eof(what)
        self.i += 1
        return self.lines[self.i - 1].split()

    def count(self, what: str) -> int:
        toks = self.tokens(what)
        if len(toks) != 1 or not toks[0].isdigit():
            raise self.fail(self.i - 1, f"expected {what} (one non-negative integer), got {_show(toks)}")
        return int(toks[0])

    def parse(self) -> SkeletonFile:
        T = self.count("the number of frames")
        per_frame: list[list[tuple[str, int]]] = []  # per frame: (bodyID, first joint line index)
        for t in range(T):
            B = self.count(f"the number of bodies in frame {t + 1} of {T}")
            bodies = []
            for b in range(B):
                where = f"body {b + 1} of {B} in frame {t + 1}"
                info = self.tokens(f"the info line of {where}")
                if len(info) != len(BODY_INFO_FIELDS) or not info[0].isdigit() or not _all_numbers(info[1:]):
                    raise self.fail(
                        self.i - 1,
                        f"expected the info line of {where}: {len(BODY_INFO_FIELDS)} "
                        f"numbers ({' '.join(BODY_INFO_FIELDS)}; bodyID an unsigned integer), got "
                        f"{_show(info)}",
                    )
                J = self.count(f"the joint count of {where}")
                if J != NUM_JOINTS:
                    raise self.fail(self.i - 1, f"{where} has {J} joints; NTU RGB+D bodies have {NUM_JOINTS}")
                if self.i + NUM_JOINTS > self.n:
                    self.starts.append(self.i)  # so that fail() checks its joint lines first
                    raise self.eof(f"joint {self.n - self.i + 1} of {NUM_JOINTS} of {where}")
                bodies.append((info[0], self.i))
                self.starts.append(self.i)
                self.i += NUM_JOINTS
            per_frame.append(bodies)
        extra = next((k for k in range(self.i, self.n) if self.lines[k].strip()), None)
        if extra is not None:
            raise self.fail(
                extra,
                f"unexpected content after the last frame: line 1 announces {T} frames, and they end on line {self.i}",
            )
        return self._assemble(per_frame)

    def _assemble(self, per_frame: list[list[tuple[str, int]]]) -> SkeletonFile:
        T = len(per_frame)
        ids: dict[str, int] = {}
        slots: list[tuple[int, int, int]] = []  # (track, frame, first joint line)
        for t, bodies in enumerate(per_frame):
            seen: dict[str, int] = {}
            for body_id, start in bodies:
                # a repeated bodyID within one frame (never in valid files) gets its own track
                k = seen[body_id] = seen.get(body_id, -1) + 1
                key = body_id if k == 0 else f"{body_id}#{k}"
                slots.append((ids.setdefault(key, len(ids)), t, start))
        joints = self._joint_values([s[2] for s in slots])  # (S, 25, 12)
        assert joints.shape[0] == len(slots), "joint lines failed to parse but no bad line was found"
        xyz = np.zeros((len(ids), T, NUM_JOINTS, 3), np.float32)
        present = np.zeros((len(ids), T), bool)
        if slots:
            track, frame = np.array([s[0] for s in slots]), np.array([s[1] for s in slots])
            xyz[track, frame] = joints[..., :3]
            present[track, frame] = True
        counts = np.array([len(b) for b in per_frame], np.int64)
        return SkeletonFile(xyz, tuple(ids), present, counts)

    def _joint_values(self, starts: list[int]) -> np.ndarray:
        """The joint lines of the given blocks as `(S, 25, 12)` float64; the fast path parses them at once.

        Raises DataError at the first bad line (in file order) when any is bad.
        """
        if not starts:
            return np.zeros((0, NUM_JOINTS, len(JOINT_FIELDS)))
        lines = [self.lines[s + j] for s in starts for j in range(NUM_JOINTS) if s + j < self.n]
        try:
            values = np.array([ln.split() for ln in lines], dtype=np.float64)  # (S * 25, 12)
            if values.shape == (len(starts) * NUM_JOINTS, len(JOINT_FIELDS)) and np.isfinite(values).all():
                return values.reshape(len(starts), NUM_JOINTS, len(JOINT_FIELDS))
        except ValueError:
            pass
        for s in sorted(starts):  # slow path: find the first bad line
            for j in range(min(NUM_JOINTS, self.n - s)):
                toks = self.lines[s + j].split()
                if len(toks) != len(JOINT_FIELDS) or not _all_numbers(toks, finite=True):
                    raise DataError(
                        f"{self.where}, line {s + j + 1}: expected joint {j + 1} of {NUM_JOINTS}: "
                        f"{len(JOINT_FIELDS)} finite numbers ({' '.join(JOINT_FIELDS)}), got "
                        f"{_show(toks)}. The file is corrupt; re-extract it from the NTU RGB+D archive "
                        "(a dataset build skips it and lists it in bad_files.json)."
                    )
        return np.zeros((0, NUM_JOINTS, len(JOINT_FIELDS)))  # all present lines good: the last block is cut


def _all_numbers(tokens: list[str], finite: bool = False) -> bool:
    """True when every token parses as a float64 (the same parser as the fast path), finite if asked."""
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        return False
    return not finite or bool(np.isfinite(values).all())


def _show(tokens: list[str]) -> str:
    """A short description of a line's tokens for error messages."""
    if not tokens:
        return "an empty line"
    text = " ".join(tokens)
    return f"{len(tokens)} value(s): {text[:80]!r}{'...' if len(text) > 80 else ''}"


def body_energy(tracks: np.ndarray) -> np.ndarray:
    """Motion energy of each body track: `(B,)` float64.

    The sum over joints and x, y, z of the variance over time, taken over the frames where the body
    is tracked (any non-zero joint); 0 for a body tracked in fewer than two frames.

    Args:
        tracks: `(B, T, V, 3)` camera coordinates, 0 where a body is absent.
    """
    x = np.asarray(tracks, dtype=np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"body tracks must be shaped (B, T, V, 3), got {x.shape}; read_skeleton returns that.")
    on = np.any(x != 0, axis=3)  # (B, T, V): joint tracked (a lost joint is 0, not a position)
    n = np.maximum(on.sum(1), 1)[..., None]  # (B, V, 1)
    w = on[..., None]  # (B, T, V, 1)
    mean = (x * w).sum(1) / n  # (B, V, 3)
    var = (((x - mean[:, None]) * w) ** 2).sum(1) / n  # (B, V, 3)
    return var.sum(axis=(1, 2))


def select_bodies(tracks: np.ndarray, max_bodies: int = 2) -> np.ndarray:
    """Keep the `max_bodies` most active body tracks, most active first, zero-padded: `(max_bodies, T, V, 3)` float32.

    Rule (CTR-GCN's `get_raw_skes_data.py` "motion"): rank by `body_energy`, the summed per-joint
    variance over the frames where the body is tracked; ties go to the body tracked in more frames,
    then to the one that appears first. Motion rather than Shift-GCN's std over all joints, because
    that std also grows with the body's spatial extent, so a large still false detection (furniture,
    a second body hypothesis over the actor) can outrank the acting person; a flicker tracked in
    a single frame has zero motion and ranks last. Tracks are then placed in rank order, and a
    track that never overlaps in time with an already kept one continues it (Kinect re-assigns a
    body ID when it loses a person; CTR-GCN merges such fragments too).

    Args:
        tracks: `(B, T, V, 3)` from `read_skeleton`, 0 where a body is absent (B may be 0).
        max_bodies: M, the number of bodies kept.
    """
    x = np.asarray(tracks)
    energy = body_energy(x)  # (B,), also validates the shape
    if not isinstance(max_bodies, (int, np.integer)) or max_bodies < 1:
        raise InputError(f"max_bodies must be a positive int, got {max_bodies!r}.")
    B, T, V, _ = x.shape
    present = np.any(x != 0, axis=(2, 3))  # (B, T)
    frames = present.sum(1)  # (B,)
    order = np.lexsort((np.arange(B), -frames, -energy))  # last key sorts first
    # Kinect re-assigns a body ID when it loses a person: a track that never overlaps in time with a
    # kept one continues it (as CTR-GCN merges ID fragments), instead of taking the second slot.
    out = np.zeros((max_bodies, T, V, 3), np.float32)
    used = np.zeros((max_bodies, T), bool)
    kept = 0
    for b in order:
        if frames[b] == 0:
            continue
        slot = next((k for k in range(kept) if not (used[k] & present[b]).any()), None)
        if slot is None:
            if kept == max_bodies:
                continue
            slot, kept = kept, kept + 1
        out[slot, present[b]] = x[b, present[b]]
        used[slot] |= present[b]
    return out


def load_missing_list(dataset: str) -> frozenset[str]:
    """Sample names on the official list of missing or incomplete skeletons of `dataset`.

    302 names for "ntu60"; 535 for "ntu120" (which contains the 302). Copies of the lists of
    shahroudy/NTURGB-D are shipped in `tdsm_edge/skeleton/ntu_missing/`.
    """
    if dataset not in _MISSING_FILES:
        raise InputError(f"unknown NTU dataset {dataset!r}; choose one of {', '.join(_MISSING_FILES)}.")
    return _missing(dataset)


@cache
def _missing(dataset: str) -> frozenset[str]:
    path = _MISSING_DIR / _MISSING_FILES[dataset]
    try:
        names = [ln.strip() for ln in path.read_text(encoding="ascii").splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(
            f"the missing-skeleton list {str(path)!r} cannot be read ({e}); the tdsm-edge installation "
            "is incomplete: reinstall the package."
        ) from e
    bad = [n for n in names if not SAMPLE_NAME.fullmatch(n)]
    if bad:
        raise DataError(
            f"{path} holds entries that are not sample names, e.g. {bad[0]!r}; the file is corrupt: "
            "reinstall the package."
        )
    return frozenset(names)
