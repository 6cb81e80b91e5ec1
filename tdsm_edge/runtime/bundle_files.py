"""Reading files inside a bundle folder only: no symlinks, no special files, nothing unlisted. Standard library only.

    problems = scan(root, listed={"scorer_fp32.onnx", …})   # [] when the folder holds exactly the listed files
    data = read_file(root, "scorer_fp32.onnx")              # bytes, opened without following any symlink
    digest = sha256_in(root, "text_encoder.onnx")           # streamed

Every path is opened component by component from the bundle folder with O_NOFOLLOW (where the OS
has `dir_fd`, i.e. Linux and macOS), so a symlink anywhere below the bundle folder, or a file swapped
for one after the scan, is refused instead of followed; and the opened file must be a regular file
(a FIFO or a device would block or never end). The bundle folder itself may be a symlink
(`engines/current -> engines/v3`): it is resolved once, and everything is read below that.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

ALLOWED_UNLISTED = ("manifest.json", "manifest.sig")  # the only files a bundle holds beyond its listed ones
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_SAFE_WALK = os.open in os.supports_dir_fd and bool(_NOFOLLOW)


class UnsafeFile(OSError):
    """A path in the bundle is a symlink, a special file or not there (the message says which)."""


def _kind(mode: int) -> str:
    return (
        "a symlink"
        if stat.S_ISLNK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )


def open_file(root: Path, rel: str) -> int:
    """A read-only fd of the regular file `root/rel`, opened without following symlinks (UnsafeFile otherwise)."""
    parts = rel.split("/")
    if not _SAFE_WALK:  # e.g. Windows: check each component with lstat, then open
        p = Path(root)
        for part in parts:
            p = p / part
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeFile(f"{rel} is reached through a symlink ({p.relative_to(root)})")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    else:
        fd = os.open(root, os.O_RDONLY | _DIRECTORY)
        try:
            for part in parts[:-1]:
                try:
                    nxt = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
                except OSError as e:
                    raise UnsafeFile(f"{rel}: its folder {part!r} is a symlink or not a folder ({e.strerror})") from e
                os.close(fd)
                fd = nxt
            try:
                leaf = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as e:  # ELOOP: the last component is a symlink
                raise UnsafeFile(f"{rel} is a symlink or cannot be opened ({e.strerror})") from e
        finally:
            os.close(fd)
        fd = leaf
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UnsafeFile(f"{rel} is {_kind(st.st_mode)}, not a regular file")
    return fd


def read_file(root: Path, rel: str, max_bytes: int | None = None) -> bytes:
    """The bytes of `root/rel` (see `open_file`); UnsafeFile when larger than `max_bytes`."""
    fd = open_file(root, rel)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise UnsafeFile(f"{rel} is {size:,} bytes, more than the {max_bytes:,} allowed")
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # it grew since the fstat
            raise UnsafeFile(f"{rel} is more than the {max_bytes:,} bytes allowed")
        return data


def sha256_in(root: Path, rel: str, chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of `root/rel`, streamed (see `open_file`)."""
    h = hashlib.sha256()
    with os.fdopen(open_file(root, rel), "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def scan(
    root: Path, listed: set[str], allowed: tuple[str, ...] = ALLOWED_UNLISTED, report_missing: bool = True
) -> list[str]:
    """What is wrong with the folder's content, without following or reading anything: symlinks, special
    files, files neither listed nor allowed, folders holding no listed file, and (`report_missing`) listed
    files that are missing."""
    problems: list[str] = []
    found: set[str] = set()
    needed_dirs = {"/".join(f.split("/")[:i]) for f in listed for i in range(1, f.count("/") + 1)}

    def walk(d: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            problems.append(f"{prefix or '.'}: cannot be listed ({e.strerror})")
            return
        for e in entries:
            rel = prefix + e.name
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except OSError as err:  # removed or replaced while being listed
                problems.append(f"{rel} changed while the folder was checked ({err.strerror})")
                continue
            if stat.S_ISLNK(mode):
                problems.append(f"{rel} is a symlink (bundle files must be regular files inside the folder)")
            elif stat.S_ISDIR(mode):
                if rel not in needed_dirs:
                    problems.append(f"{rel}/ is a folder the manifest does not list")
                else:
                    walk(Path(e.path), rel + "/")
            elif not stat.S_ISREG(mode):
                problems.append(f"{rel} is {_kind(mode)}, not a regular file")
            elif rel in listed:
                found.add(rel)
            elif not (prefix == "" and e.name in allowed):
                problems.append(f"{rel} is not listed in the manifest")

    walk(root, "")
    if report_missing:
        problems += [
            f"{rel} is missing" for rel in sorted(listed - found) if not any(p.startswith(rel + " ") for p in problems)
        ]
    return problems
