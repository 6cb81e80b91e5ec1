"""Test helper: writes NTU RGB+D `.skeleton` files in the published text layout from known arrays.

Not a test module: test files import it as `from helpers import ntu_skeleton_writer` (pyproject.toml
puts tests/ on pytest's pythonpath).

Layout (shared/data/ntu/ntu_skeleton_format.md, section 2): line 1 the frame count; per frame the
body count; per body a 10-value info line, the joint count (25) and 25 joint lines of 12 values.
Coordinates are written with 7 significant digits, as in the published files; `quantize` gives the
float32 values a reader must return for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

V = 25
Frame = Sequence[tuple[int, np.ndarray]]  # the bodies of one frame: (bodyID, (25, 3) x y z)


def quantize(xyz: np.ndarray) -> np.ndarray:
    """The float32 values that the 7-digit text of `xyz` parses to (what read_skeleton must return)."""
    return np.vectorize(lambda v: float(f"{v:.7g}"))(np.asarray(xyz, np.float64)).astype(np.float32)


def info_line(body_id: int) -> str:
    # bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence handRightState
    # isResticted leanX leanY trackingState
    return f"{body_id} 0 1 1 1 1 0 0.1334287 -0.04216362 2"


def joint_line(x: float, y: float, z: float) -> str:
    # x y z depthX depthY colorX colorY orientationW orientationX orientationY orientationZ trackingState
    return f"{x:.7g} {y:.7g} {z:.7g} 277.4191 191.8218 1036.233 519.1677 -0.2059419 0.05349901 0.9692109 -0.1239193 2"


def skeleton_lines(frames: Sequence[Frame]) -> list[str]:
    """The lines of a file holding `frames`."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, xyz in bodies:
            lines += [info_line(body_id), str(V)]
            lines += [joint_line(*p) for p in np.asarray(xyz, np.float64).reshape(V, 3)]
    return lines


def write_lines(path: Path, lines: Sequence[str], newline: str = "\r\n") -> Path:
    """Write `lines`, each ended by `newline`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(ln + newline for ln in lines).encode("ascii"))
    return path


def write_skeleton(path: Path, frames: Sequence[Frame], newline: str = "\r\n") -> Path:
    return write_lines(path, skeleton_lines(frames), newline)


def line_of(frames: Sequence[Frame], t: int, b: int, joint: int | None = None) -> int:
    """1-based line of the info line of body `b` in frame `t` (0-based), or of its 0-based `joint`."""
    line = 2  # the body count of frame 0
    for tt, bodies in enumerate(frames):
        for bb in range(len(bodies)):
            if (tt, bb) == (t, b):
                return line + 1 if joint is None else line + 3 + joint
            line += 2 + V
        line += 1
    raise IndexError((t, b))


def random_body(rng: np.random.Generator, T: int, speed: float = 0.05) -> np.ndarray:
    """(T, 25, 3) quantized coordinates of a body around (0, 0, 3) m drifting at `speed` per frame."""
    pose = rng.uniform(-0.8, 0.8, (V, 3)) + np.array([0.0, 0.0, 3.0])
    drift = rng.normal(0.0, speed, (T, 1, 3)).cumsum(0)
    return quantize(pose + drift + rng.normal(0.0, 0.01, (T, V, 3)))


def tracks_to_frames(tracks: Sequence[tuple[int, np.ndarray, Sequence[int]]], T: int) -> list[list]:
    """Frames from (bodyID, (T, 25, 3) xyz, frames where it is listed); bodies listed in the given order."""
    return [[(bid, xyz[t]) for bid, xyz, on in tracks if t in on] for t in range(T)]
