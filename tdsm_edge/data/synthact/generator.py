"""Generate synthact sequences: deterministic, vectorised over the samples of each class.

Every class draws from its own random streams, seeded by (seed, class index, stream), and each
stream is consumed by one call whose rows are the samples, so sample i of class c depends only on
(seed, c, i, frames, nuisance): a subset of classes or a larger `per_class` reproduces the same
sequences. Computation is in float64; coordinates are rounded to 0.1 mm before the float32 cast,
which absorbs last-ulp differences between CPUs' maths libraries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ...errors import DataError
from .body import draw_subjects, forward_kinematics
from .classes import CLASSES, NUM_CLASSES
from .motion import DEG, Draws, envelope, new_pose, phase
from .nuisance import Nuisance, add_jitter, place, sensor_faults
from .primitives import PRIMITIVE_FUNCS, ActionContext
from .variation import add_idle, add_secondary, add_style

NUM_BODIES = 2
NUM_JOINTS = 25
_RESOLUTION = 1e-4  # metres: coordinates are rounded to 0.1 mm
# random streams of one class
_S_ACTOR, _S_ACTION, _S_SECOND, _S_NOISE = range(4)
_S_NOISE2 = 1000  # + sample index: the bystander's sensor noise, one small stream per present row


def _stream(seed: int, cls: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(cls, stream))))


def _actor(cls: int, n: int, u: np.ndarray, nu: Nuisance, d: Draws, da: Draws) -> np.ndarray:
    """Body-frame joints `(n, T, 25, 3)` of the actor performing class `cls`."""
    T = u.shape[0]
    dims = draw_subjects(d, nu.height_range, nu.proportion)
    dur = d.u(*nu.duration_range)  # (n, 1)
    u0 = (1.0 - dur) * (nu.start_jitter * d.u() + 0.5 * (1.0 - nu.start_jitter))
    p = phase(u, u0, dur)  # (n, T)
    ctx = ActionContext(p=p, e=envelope(p, d.u(0.15, 0.3)), amp=d.u(*nu.amplitude_range), d=da)
    pose = new_pose(n, T)
    add_style(pose, d, u, nu)
    c = CLASSES[cls]
    PRIMITIVE_FUNCS[(c.primitive, c.part)](pose, ctx, c.side)
    add_idle(pose, d, u, nu)
    add_secondary(pose, d, u, nu)
    return forward_kinematics(pose, dims)


def _bystander(n: int, u: np.ndarray, nu: Nuisance, d: Draws) -> np.ndarray:
    """Body-frame joints `(n, T, 25, 3)` of idle people (posture, drift and idle motion only)."""
    dims = draw_subjects(d, nu.height_range, nu.proportion)
    pose = new_pose(n, u.shape[0])
    add_style(pose, d, u, nu)
    add_idle(pose, d, u, nu)
    return forward_kinematics(pose, dims)


def _quantize(X: np.ndarray) -> np.ndarray:
    """Round metres to 0.1 mm and cast to float32 (identical bytes on every CPU)."""
    return (np.rint(X * (1.0 / _RESOLUTION)) * _RESOLUTION).astype(np.float32)


def _class_block(cls: int, seed: int, nu: Nuisance, out: np.ndarray) -> None:
    """Write the camera-frame sequences of one class into `out (n, 2, frames, 25, 3)` float32 (zeros)."""
    n, frames = out.shape[0], out.shape[2]
    u = np.linspace(0.0, 1.0, frames)  # normalised clip time
    d = Draws(_stream(seed, cls, _S_ACTOR), n, 320)
    da = Draws(_stream(seed, cls, _S_ACTION), n, 32)
    d2 = Draws(_stream(seed, cls, _S_SECOND), n, 256)
    noise = _stream(seed, cls, _S_NOISE).standard_normal((n, frames, NUM_JOINTS, 3), dtype=np.float32)

    yaw = d.u(-1.0, 1.0) * nu.yaw_deg * DEG
    x0, depth, floor = d.u(-nu.lateral_m, nu.lateral_m), d.u(*nu.depth_range), d.u(*nu.floor_range)
    actor = add_jitter(place(_actor(cls, n, u, nu, d, da), yaw, x0, depth, floor), noise, nu.jitter_m)
    actor[sensor_faults(d, n, frames, nu)] = 0.0  # (n, T, V, 3)
    out[:, 0] = _quantize(actor)

    # an idle second person beside the actor; its parameters are drawn for every row (so each
    # sample depends only on its own row) but only the present ones are built
    present = np.flatnonzero(d2.bern(nu.p_second_body)[:, 0])
    x2 = x0 + d2.sign() * d2.u(0.8, 1.3)
    depth2, yaw2 = depth + d2.u(-0.3, 0.6), d2.u(-40, 40) * DEG
    if present.size:
        other = place(
            _bystander(present.size, u, nu, d2.take(present)),
            yaw2[present],
            x2[present],
            depth2[present],
            floor[present],
        )  # (P, T, V, 3)
        noise2 = np.stack(
            [_stream(seed, cls, _S_NOISE2 + i).standard_normal(other.shape[1:], dtype=np.float32) for i in present]
        )  # per row: only present rows pay
        out[present, 1] = _quantize(add_jitter(other, noise2, nu.jitter_m))


def generate(
    class_ids: Sequence[int], per_class: int, seed: int, frames: int = 64, nuisance: Nuisance | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Generate `per_class` sequences of each class, class-major.

    Args:
        class_ids: global class indices (0..52), in the order wanted in the output.
        per_class: sequences per class (>= 1).
        seed: dataset seed; the same (seed, class, sample index, frames, nuisance) always gives the
            same sequence, on any machine.
        frames: T, frames per sequence (the action is timed in clip fractions, so T only sets
            the sampling density).
        nuisance: variation settings; default `Nuisance()`.

    Returns:
        X: `(N, 2, frames, 25, 3)` float32 Kinect camera coordinates in metres (x toward the
           subject's right when facing the camera, y up, z depth), NTU joint order; body 1 is
           zeros unless an idle bystander is in view; lost joints are exact zeros.
        y: `(N,)` int64 global class indices, N = len(class_ids) * per_class.

    Raises:
        DataError: unknown class index or non-positive per_class / frames.
    """
    ids = [int(c) for c in np.asarray(class_ids, dtype=np.int64).reshape(-1)]
    bad = [c for c in ids if not 0 <= c < NUM_CLASSES]
    if bad:
        raise DataError(
            f"class indices {bad[:10]} are out of range: synthact has {NUM_CLASSES} classes "
            f"(0..{NUM_CLASSES - 1}); list them with python -m tdsm_edge.data.synthact --list."
        )
    if int(per_class) < 1 or int(frames) < 2:
        raise DataError(f"per_class must be >= 1 and frames >= 2, got per_class={per_class}, frames={frames}.")
    nu = nuisance if nuisance is not None else Nuisance()
    n = int(per_class)
    X = np.zeros((len(ids) * n, NUM_BODIES, int(frames), NUM_JOINTS, 3), dtype=np.float32)
    for k, c in enumerate(ids):
        _class_block(c, int(seed), nu, X[k * n : (k + 1) * n])
    y = np.repeat(np.asarray(ids, dtype=np.int64), n)
    return X, y


def benchmark(per_class: int = 40, frames: int = 64, repeats: int = 3) -> tuple[float, float]:
    """Generation speed over all classes on the calling thread, best of `repeats`.

    Returns:
        (sequences per wall-clock second, sequences per CPU second of this process).
    """
    generate(range(NUM_CLASSES), 2, 0, frames)  # warm-up (caches, lazy imports)
    wall, cpu = float("inf"), float("inf")
    for rep in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        generate(range(NUM_CLASSES), per_class, rep, frames)
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    n = NUM_CLASSES * per_class
    return n / wall, n / cpu
