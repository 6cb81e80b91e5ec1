"""Small file helpers shared by every stage: atomic writes, json, hashing.

Nothing here imports torch, so the lean runtime can use it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it.

    A crash or exception never leaves a half-written file under the final name. The temporary file is
    created with the ordinary mode (0666 less the umask, as `open` would), so the final file is readable
    by whoever may read its folder, not only by its owner.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"cannot create a temporary file next to {path}")
    try:
        yield tmp_path
        # the writer may have replaced the file (safetensors writes its own, mode 0600): ordinary mode again
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """This process's umask (read from /proc where it can be, without changing it; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_user_file(
    path: str | Path, what: str, error: type[Exception] = ValueError, max_bytes: int = 64 << 20
) -> bytes:
    """The bytes of a file the user named (`what`, e.g. "--classes-file"), or `error` saying why not: it does
    not exist, is a folder or a special file (a FIFO would block the read forever), or is over `max_bytes`."""
    p = Path(path)
    try:
        if not p.exists():
            raise error(f"{what} {str(p)!r} does not exist")
        if not p.is_file():
            raise error(f"{what} {str(p)!r} is {'a folder' if p.is_dir() else 'not a regular file'}; pass a file")
        size = p.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {str(p)!r} is {size:,} bytes, more than the {max_bytes:,} allowed")
        return p.read_bytes()
    except OSError as e:
        raise error(f"{what} {str(p)!r} cannot be read ({e.strerror or e})") from e


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented json, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """np.save, atomically (the temp file keeps the .npy suffix so numpy does not add one)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
