"""PKU-MMD (v1) skeleton and label files -> per-action arrays in the layout `preprocess_batch` takes.

Numpy only: no torch, so the lean runtime can read recordings too.

PKU-MMD publishes one pair of text files per video, with the same name (e.g. `0002-L.txt`) in a
skeleton folder (`PKU_Skeleton_Renew/` in the v1 release) and a label folder (`Train_Label_PKU_final/`):

    skeleton file: one line per frame, 150 whitespace-separated floats =
                   2 bodies x 25 joints x (x, y, z), body-major, joints in the Kinect v2 / NTU order
                   (`tdsm_edge.skeleton.NTU25`); the second body is all zeros when only one person is seen.
    label file:    one line per action instance, `action_id,start_frame,end_frame,confidence`;
                   action_id is 1..51 (1-based, the class list in shared/data/ntu/pku51_classes.csv),
                   confidence is 1 (slight) or 2 (strong) and does not affect the segment.

Frame numbers are read as **1-based and inclusive**: the segment `start,end` is skeleton lines
`start .. end`, i.e. rows `[start - 1, end)` and `end - start + 1` frames. That is how the public
loaders that feed zero-shot PKU-MMD work read them (STAR++ `data/pkummd/part1/pku_part1_skeleton.py`
slices `frames[start - 1:end]` and counts `end - start + 1` frames; an untrimmed-detection loader
labels `[start - 1, end)`). One PKU-MMD v2 script slices `[start, end + 1)` instead (0-based); under the
1-based reading a frame number 0 is impossible and is rejected, so such a file fails loudly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

NUM_BODIES = 2  # M: bodies per frame in the file
NUM_JOINTS = 25  # V: Kinect v2 / NTU joint order
VALUES_PER_FRAME = NUM_BODIES * NUM_JOINTS * 3  # 150 floats per line
NUM_ACTIONS = 51  # action ids 1..51


@dataclass(frozen=True)
class PkuSegment:
    """One labelled action instance of a PKU-MMD video."""

    label: int  # 0-based class index (= published action_id - 1)
    start: int  # first frame, 1-based, as published
    end: int  # last frame, 1-based, inclusive
    confidence: int  # 1 = slight, 2 = strong annotator confidence (kept, not used)
    line: int = dataclasses.field(default=0, compare=False)  # 1-based line in the label file (for errors)

    @property
    def num_frames(self) -> int:
        return self.end - self.start + 1


def read_pku_skeleton(path: str | Path) -> np.ndarray:
    """Read one PKU-MMD skeleton file.

    Returns:
        `(F, 2, 25, 3)` float32 camera-space coordinates (metres), F = number of frame lines;
        an absent body is all zeros.

    Raises:
        DataError: unreadable or empty file, a line without exactly 150 values, a non-numeric or
            non-finite value, or a blank line between frames; the message names the file and the
            1-based line. Blank lines at the end of the file are ignored.
    """
    path = Path(path)
    lines = _read_lines(path, "skeleton")
    rows = [ln.split() for ln in lines]
    for i, row in enumerate(rows):
        if len(row) != VALUES_PER_FRAME:
            hint = (
                " The line is blank: frames must not be separated by empty lines, or the frame "
                "numbers of the label file would shift."
                if not row
                else " Values must be separated by whitespace, not commas."
                if len(row) == 1 and "," in row[0]
                else ""
            )
            raise DataError(
                f"{str(path)!r} line {i + 1}: {len(row)} values, but a PKU-MMD skeleton line holds "
                f"{VALUES_PER_FRAME} (2 bodies x 25 joints x xyz).{hint} The file is truncated or "
                "not a PKU-MMD skeleton file; re-extract it from the release archive."
            )
    try:
        x = np.array(rows, dtype=np.float64)  # (F, 150)
    except ValueError:
        line, col, tok = _first_bad_token(rows)
        raise DataError(
            f"{str(path)!r} line {line}: value {col} is {tok!r}, which is not a number. The file "
            "is corrupt or not a PKU-MMD skeleton file; re-extract it from the release archive."
        ) from None
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise DataError(
            f"{str(path)!r} line {bad[0] + 1}: NaN or infinite coordinate. PKU-MMD marks missing "
            "joints with zeros; re-extract the file, or replace the value with 0."
        )
    return x.reshape(len(x), NUM_BODIES, NUM_JOINTS, 3).astype(np.float32)  # (F, M, V, C)


def read_pku_labels(path: str | Path) -> list[PkuSegment]:
    """Read one PKU-MMD label file: one `action_id,start_frame,end_frame,confidence` line per action.

    Returns:
        The segments in file order, with 0-based labels and the published 1-based inclusive frames.

    Raises:
        DataError (naming the file and 1-based line): unreadable or empty file, a line without four
            comma-separated integers, an action id outside 1..51, a start frame below 1, or end < start.
            Blank lines are skipped.
    """
    path = Path(path)
    segments = []
    for i, ln in enumerate(_read_lines(path, "label"), start=1):
        if not ln.strip():
            continue  # blank lines shift nothing in a label file
        where = f"{str(path)!r} line {i}"
        fields = [f.strip() for f in ln.split(",")]
        if len(fields) != 4:
            raise DataError(
                f"{where}: {ln.strip()!r} has {len(fields)} comma-separated fields; a PKU-MMD label line "
                "is action_id,start_frame,end_frame,confidence. Check that this is a label file."
            )
        try:
            action, start, end, conf = (int(f) for f in fields)
        except ValueError:
            raise DataError(
                f"{where}: {ln.strip()!r} holds a non-integer field; action_id, start_frame, end_frame "
                "and confidence are all integers. The file is corrupt; re-extract it."
            ) from None
        if not 1 <= action <= NUM_ACTIONS:
            raise DataError(
                f"{where}: action id {action} is outside 1..{NUM_ACTIONS}. PKU-MMD v1 ids are 1-based "
                "(see pku51_classes.csv); a 0 suggests the file was rewritten with 0-based ids."
            )
        if start < 1:
            raise DataError(
                f"{where}: start frame {start} < 1. Frame numbers are read as 1-based (the first "
                "skeleton line is frame 1); a 0-based file must be shifted by +1 first."
            )
        if end < start:
            raise DataError(
                f"{where}: end frame {end} is before start frame {start}. Fix the line (swap the two "
                "numbers if they were written in the wrong order)."
            )
        segments.append(PkuSegment(action - 1, start, end, conf, line=i))
    return segments


def pku_segments(
    skeleton_path: str | Path, label_path: str | Path, clip: bool = False
) -> list[tuple[PkuSegment, np.ndarray]]:
    """Cut a video's skeleton into its labelled action instances.

    Args:
        skeleton_path, label_path: the video's skeleton and label files.
        clip: a segment whose end lies past the last skeleton frame is an error by default (the pair
            of files does not match, or the skeleton file is truncated). With `clip=True` it is cut at
            the last frame instead, the returned segment's `end` is lowered to match, and a warning is
            logged. A segment that *starts* past the last frame is always an error.

    Returns:
        `[(segment, seq)]` in label-file order; `seq` is `(2, T, 25, 3)` float32 (M, T, V, C) with
        T = segment.num_frames: stack equal-length ones into the `(N, M, T, V, 3)` batch that
        `tdsm_edge.skeleton.preprocess.preprocess_batch` takes (layout NTU25).
    """
    skel = read_pku_skeleton(skeleton_path)  # (F, M, V, C)
    num_frames = len(skel)
    out = []
    for seg in read_pku_labels(label_path):
        if seg.end > num_frames:
            where = (
                f"{str(label_path)!r} line {seg.line}: frames {seg.start}..{seg.end}, but "
                f"{str(skeleton_path)!r} has {num_frames} frames"
            )
            if not clip or seg.start > num_frames:
                raise DataError(
                    f"{where}. The label file belongs to another video, or the skeleton file is "
                    "truncated; check the pairing"
                    + ("" if clip else ", or pass clip=True to cut overrunning segments at the last frame")
                    + "."
                )
            log.warning("%s; clipping the segment to end at frame %d", where, num_frames)
            seg = dataclasses.replace(seg, end=num_frames)
        seq = skel[seg.start - 1 : seg.end].transpose(1, 0, 2, 3)  # (M, T, V, C)
        out.append((seg, np.ascontiguousarray(seq)))
    return out


def list_pku_videos(
    skeleton_dir: str | Path, label_dir: str | Path, unmatched: list[tuple[str, str]] | None = None
) -> list[tuple[str, Path, Path]]:
    """Pair the `*.txt` skeleton and label files of two folders by file stem (the video id, e.g. `0002-L`).

    Args:
        unmatched: if given, a file without a partner is appended to it as `(path, reason)` and
            skipped (a dataset build reports it); otherwise it is an error.

    Returns:
        `[(video_id, skeleton_path, label_path)]` sorted by video id (paired videos only).

    Raises:
        DataError: a folder is missing or holds no `.txt` file, or (without `unmatched`) some stems
            have no partner (the message counts them and lists a few from each side).
    """
    found = []
    for kind, d in (("skeleton", Path(skeleton_dir)), ("label", Path(label_dir))):
        if not d.is_dir():
            raise DataError(
                f"PKU-MMD {kind} folder {str(d)!r} does not exist; point to the extracted release "
                "folder (v1: PKU_Skeleton_Renew/ for skeletons, Train_Label_PKU_final/ for labels)."
            )
        files = {p.stem: p for p in d.glob("*.txt") if p.is_file()}
        if not files:
            raise DataError(
                f"PKU-MMD {kind} folder {str(d)!r} holds no .txt file; is the archive extracted into a sub-folder?"
            )
        found.append(files)
    skels, labels = found
    only_skel, only_label = sorted(skels.keys() - labels.keys()), sorted(labels.keys() - skels.keys())
    if unmatched is not None:
        unmatched += [
            (str(skels[stem]), f"no label file named {stem}.txt to pair it with; the video is skipped")
            for stem in only_skel
        ]
        unmatched += [
            (str(labels[stem]), f"no skeleton file named {stem}.txt to pair it with; the video is skipped")
            for stem in only_label
        ]
    elif only_skel or only_label:
        parts = [
            f"{len(names)} {kind} file(s) without a {other} file (e.g. {', '.join(names[:5])})"
            for names, kind, other in ((only_skel, "skeleton", "label"), (only_label, "label", "skeleton"))
            if names
        ]
        raise DataError(
            f"cannot pair {str(skeleton_dir)!r} with {str(label_dir)!r}: {'; '.join(parts)}. Every "
            "video needs both files under the same name; check that both folders come from the "
            "same PKU-MMD part, or remove the unmatched files."
        )
    return [(stem, skels[stem], labels[stem]) for stem in sorted(skels.keys() & labels.keys())]


def _read_lines(path: Path, kind: str) -> list[str]:
    """The file's lines without trailing blank lines; DataError if unreadable or empty."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"PKU-MMD {kind} file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(
            f"cannot read PKU-MMD {kind} file {str(path)!r}: {e}. It should be plain ASCII text; "
            "re-extract it from the release archive."
        ) from e
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(
            f"PKU-MMD {kind} file {str(path)!r} is empty; the extraction was interrupted or the "
            "video has no data. Re-extract it, or leave the video out."
        )
    return lines


def _first_bad_token(rows: list[list[str]]) -> tuple[int, int, str]:
    """(1-based line, 1-based position, token) of the first token float() rejects."""
    for i, row in enumerate(rows):
        for j, tok in enumerate(row):
            try:
                float(tok)
            except ValueError:
                return i + 1, j + 1, tok
    raise AssertionError("np.array rejected a row that float() accepts")  # internal invariant
