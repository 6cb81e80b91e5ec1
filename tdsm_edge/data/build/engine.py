"""The build itself: chunks of items read and preprocessed by a process pool, resumable, written atomically.

Each chunk of `chunk_size` items is written atomically by a worker to parts/part_XXXXX.npz; an
interrupted build resumes from its finished parts. The final files (see `tdsm_edge.data.build`) are
streamed from the parts, written atomically, COMPLETE last; the parts are then removed.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ... import __version__
from ...errors import DataError, InputError
from ...io import atomic_path, read_json, save_npy, write_json
from .folder import COMPLETE, FORMAT_VERSION, OUTPUTS, PARTS, STATE, read_meta
from .sources import BuildItem, Listing, source_module

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Chunk:
    """The work of one worker call: read and preprocess `items`, write them to `part`."""

    source: str
    part: str
    items: tuple[BuildItem, ...]
    frames: int
    align_view: bool
    layout: str
    info_width: int


def build_dataset(
    out: str | Path,
    listing: Listing,
    *,
    source: str,
    dataset: str,
    frames: int = 64,
    align_view: bool = False,
    workers: int = 2,
    chunk_size: int = 256,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
) -> dict | None:
    """Build the output folder `out` from the items of `listing` (see the module docstring for its files).

    Args:
        out: output folder (created if needed).
        listing: from the source's `list_items`.
        source, dataset: a key of SOURCES and one of that source's DATASETS.
        frames: sequence length after resampling.
        align_view: rotate each sequence so that its hip line lies along +x.
        workers: worker processes (1: no pool).
        chunk_size: items per part file, the unit of resuming.
        resume: reuse the finished parts of an unfinished build with the same options.
        overwrite: delete a previous build in `out` first.
        progress: show a progress bar.
        stop_after_chunks: process at most this many new chunks, then return None without finishing
            (simulates an interruption; resume later).

    Returns:
        The meta.json content, or None when stopped early.

    Raises:
        InputError: invalid option. DataError: `out` holds a build that these options may not touch,
            or no item could be built (bad_files.json says why).
    """
    mod = source_module(source)
    _check_options(mod, dataset, frames, workers, chunk_size, resume, overwrite)
    out = Path(out)
    digest = hashlib.sha256("\n".join(f"{i.name}\t{i.label}\t{i.info}" for i in listing.items).encode()).hexdigest()
    options = {
        "source": source,
        "dataset": dataset,
        "frames": frames,
        "align_view": bool(align_view),
        "layout": mod.LAYOUT,
        "chunk_size": chunk_size,
        "items": len(listing.items),
        "items_sha256": digest,
    }
    if _prepare(out, options, resume, overwrite):
        log.info(
            "%s already holds a complete build with these options; nothing to do (files in its "
            "bad_files.json are not retried: rebuild with --overwrite after repairing them)",
            out,
        )
        return read_json(out / "meta.json")
    parts = out / PARTS
    parts.mkdir(parents=True, exist_ok=True)
    write_json(parts / STATE, options)
    chunks = [tuple(listing.items[i : i + chunk_size]) for i in range(0, len(listing.items), chunk_size)]
    paths = [parts / f"part_{k:05d}.npz" for k in range(len(chunks))]
    done = [resume and _part_ok(p, c) for p, c in zip(paths, chunks)]
    todo = [
        _Chunk(source, str(p), c, frames, bool(align_view), mod.LAYOUT, len(mod.INFO_COLUMNS))
        for p, c, d in zip(paths, chunks, done)
        if not d
    ]
    if any(done):
        log.info("resuming: %d of %d chunks already built", sum(done), len(chunks))
    stopped = stop_after_chunks is not None and stop_after_chunks < len(todo)
    _run(
        todo[:stop_after_chunks] if stopped else todo,
        workers,
        progress,
        len(listing.items),
        sum(len(c) for c, d in zip(chunks, done) if d),
        dataset,
    )
    if stopped:
        log.info("stopped after %d new chunks; finish with resume=True (--resume)", stop_after_chunks)
        return None
    meta = _assemble(out, paths, options, listing, mod)
    shutil.rmtree(parts)
    return meta


def _check_options(
    mod: ModuleType, dataset: str, frames: int, workers: int, chunk_size: int, resume: bool, overwrite: bool
) -> None:
    if dataset not in mod.DATASETS:
        raise InputError(f"dataset {dataset!r} is not one of this source's: {', '.join(mod.DATASETS)}.")
    for name, value in (("frames", frames), ("workers", workers), ("chunk_size", chunk_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}.")
    if resume and overwrite:
        raise InputError(
            "resume and overwrite exclude each other: resume keeps a previous build, overwrite "
            "deletes it. Pass one of them."
        )


def _prepare(out: Path, options: dict, resume: bool, overwrite: bool) -> bool:
    """Check what `out` holds against the request; True when a matching complete build is already there."""
    if overwrite:
        for name in (COMPLETE,) + OUTPUTS:  # the marker first: never a complete-looking half
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / PARTS, ignore_errors=True)
        return False
    if (out / COMPLETE).is_file():
        if not resume:
            raise DataError(
                f"{out} already holds a complete build. Pass --resume to keep it (nothing is redone "
                "when the options match) or --overwrite to rebuild it, or choose another --out."
            )
        _check_same(out, "complete", read_meta(out).get("build_options", {}), options, ignore=("chunk_size",))
        shutil.rmtree(out / PARTS, ignore_errors=True)  # left over if the last build stopped while cleaning
        return True
    if (out / PARTS).is_dir():
        if not resume:
            raise DataError(
                f"{out} holds an unfinished build ({out / PARTS}). Pass --resume to continue it or "
                "--overwrite to start over."
            )
        state = out / PARTS / STATE
        if not state.is_file():
            raise DataError(
                f"{out / PARTS} has no {STATE}, so it cannot be matched to these options; pass "
                "--overwrite to start over."
            )
        _check_same(out, "unfinished", read_json(state), options)
    return False


def _check_same(out: Path, kind: str, old: dict, new: dict, ignore: tuple[str, ...] = ()) -> None:
    diff = [f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in new if k not in ignore and old.get(k) != new[k]]
    if diff:
        raise DataError(
            f"cannot resume: {out} holds a {kind} build made with other options or another file "
            f"list ({'; '.join(diff)}). Rerun with the options of that build, or pass --overwrite "
            "to rebuild."
        )


def _part_ok(path: Path, chunk: tuple[BuildItem, ...]) -> bool:
    """True when `path` is a finished part of exactly `chunk` (each item either written or reported bad)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names, n_bad = z["names"].tolist(), len(z["bad_files"])
    except (OSError, ValueError, KeyError):
        return False
    return len(names) + n_bad == len(chunk) and set(names) <= {i.name for i in chunk}


def _run(todo: list[_Chunk], workers: int, progress: bool, total: int, initial: int, desc: str) -> None:
    from tqdm.auto import tqdm

    with tqdm(total=total, initial=initial, desc=desc, unit="file", disable=not progress) as bar:
        if workers == 1 or len(todo) <= 1:
            for chunk in todo:
                bar.update(_build_chunk(chunk))
            return
        with multiprocessing.get_context().Pool(min(workers, len(todo))) as pool:
            for n in pool.imap_unordered(_build_chunk, todo):
                bar.update(n)


def _build_chunk(chunk: _Chunk) -> int:
    """Worker: read and preprocess each item, write the part file; returns the number of items handled."""
    from ...skeleton.layout import load_layout
    from ...skeleton.preprocess import preprocess_batch

    mod, layout = source_module(chunk.source), load_layout(chunk.layout)
    xs: list[np.ndarray] = []
    kept: list[BuildItem] = []
    bad: list[tuple[str, str]] = []
    for item in chunk.items:
        try:
            raw = np.asarray(mod.read_item(item))  # (M, T, V, 3)
            xs.append(preprocess_batch(raw[None], chunk.frames, layout, chunk.align_view)[0])  # (3, F, V, 2)
            kept.append(item)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the build: it is reported instead
            text = str(e) if item.path in str(e) else f"{item.path}: {type(e).__name__}: {e}"
            bad.append((item.path, text))
    V = layout.num_joints
    with atomic_path(chunk.part) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            data=np.stack(xs) if xs else np.zeros((0, 3, chunk.frames, V, 2), np.float32),
            label=np.array([i.label for i in kept], np.int64),
            info=np.array([i.info for i in kept], np.int64).reshape(len(kept), chunk.info_width),
            names=np.array([i.name for i in kept], str),
            bad_files=np.array([b[0] for b in bad], str),
            bad_errors=np.array([b[1] for b in bad], str),
        )
    return len(chunk.items)


def _assemble(out: Path, parts: list[Path], options: dict, listing: Listing, mod: ModuleType) -> dict:
    """Concatenate the parts into the final files (data.npy streamed, never all in memory); COMPLETE last."""
    names: list[str] = []
    labels, infos = [], []
    bad = list(listing.bad)
    for p in parts:
        with np.load(p, allow_pickle=False) as z:
            names += z["names"].tolist()
            labels.append(z["label"])
            infos.append(z["info"])
            bad += zip(z["bad_files"].tolist(), z["bad_errors"].tolist())
    bad_json = [{"file": f, "error": e} for f, e in sorted(bad)]
    write_json(out / "bad_files.json", bad_json)
    N, F, V = len(names), options["frames"], _num_joints(options["layout"])
    counts = {"files": listing.files, **listing.skipped, "bad_files": len(bad), "written": N}
    if N == 0:
        raise DataError(
            f"no sample could be built ({counts}); see {out / 'bad_files.json'} for the files that "
            "failed and check --src and --dataset."
        )
    with atomic_path(out / "data.npy") as tmp:
        data = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(N, 3, F, V, 2))
        row = 0
        for p in parts:
            with np.load(p, allow_pickle=False) as z:
                d = z["data"]  # (n, 3, F, V, 2)
                data[row : row + len(d)] = d
                row += len(d)
        data.flush()
        del data
    save_npy(out / "label.npy", np.concatenate(labels))
    save_npy(out / "info.npy", np.concatenate(infos))
    meta = {
        "format_version": FORMAT_VERSION,
        "tool": "tdsm_edge.data.build",
        "tool_version": __version__,
        "source": options["source"],
        "dataset": options["dataset"],
        "num_classes": mod.DATASETS[options["dataset"]],
        "frames": F,
        "align_view": options["align_view"],
        "layout": options["layout"],
        "shape": [N, 3, F, V, 2],
        "info_columns": list(mod.INFO_COLUMNS),
        "counts": counts,
        "build_options": options,
        "names": names,
    }
    write_json(out / "meta.json", meta)
    (out / COMPLETE).write_text("all arrays written\n")
    log.info(
        "built %s: %d samples in %s (%s)", options["dataset"], N, out, ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    if bad:
        log.warning(
            "%d file(s) could not be used and are listed in %s; first: %s. --resume keeps them out; "
            "after repairing them, rebuild with --overwrite",
            len(bad),
            out / "bad_files.json",
            bad_json[0]["error"],
        )
    return meta


def _num_joints(layout: str) -> int:
    from ...skeleton.layout import load_layout

    return load_layout(layout).num_joints
