"""A bundle under construction: the staging folder, the manifest's seal, and where a build may write.

    with BundleStage("engines/demo") as stage:      # refuses an --out that is not a bundle; removes stale stages
        ...write files to stage.path(name)...
        manifest = stage.write_manifest(data)       # hashes the files, seals the staged manifest, loads it back
        stage.commit()                              # manifest.json appears, the folder is renamed into place

`seal_manifest` is the one writer of manifest.json (digest included); `check_replaceable` is the one
rule of which folders a build may replace.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from pathlib import Path

from tdsm_edge.errors import BundleError, ExportError
from tdsm_edge.io import json_default, sha256_file, write_json
from tdsm_edge.runtime import bundle_files
from tdsm_edge.runtime.integrity import DIGEST_FIELD, SIGNATURE_FILE, manifest_digest
from tdsm_edge.runtime.manifest import FORMAT, MANIFEST, MAX_MANIFEST_BYTES, TEMP_FOLDER, Manifest, load_manifest

log = logging.getLogger(__name__)


class BundleStage:
    """A bundle under construction in `.<name>.staging-<pid>` next to `out_dir`.

    Use as a context manager: files go to `stage.path(name)`, `write_manifest` hashes them and
    writes the staged manifest (`STAGED_MANIFEST`: the folder is not loadable as a bundle until the
    commit), `commit()` renames it to manifest.json and the folder to `out_dir`. Leaving the block
    without `commit()` (an error, Ctrl-C) deletes the stage; a stage left by a killed build is deleted
    by the next build of the same `out_dir`.

    `out_dir` is replaced only when it does not exist, is empty, or is a tdsm-edge bundle holding
    nothing but its listed files (`check_replaceable`): any other folder is refused and left untouched.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.dir = self.out.parent / f".{self.out.name}.staging-{os.getpid()}"
        self.committed = False

    def __enter__(self) -> BundleStage:
        check_replaceable(self.out)
        remove_stale_temp_folders(self.out)
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.dir.mkdir(parents=True)
        except OSError as e:
            raise BundleError(
                f"cannot create the build folder {str(self.dir)!r} next to --out ({e.strerror}); "
                "pass an --out whose parent is a writable folder"
            ) from e
        except BaseException:  # Ctrl-C right after mkdir: __exit__ would not run
            self.discard()
            raise
        return self

    def discard(self) -> None:
        """Delete the stage unless it was committed (also safe to call when it was never created)."""
        if not self.committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.discard()

    def path(self, name: str) -> Path:
        return self.dir / name

    def write_manifest(self, data: dict) -> Manifest:
        """Add the sha256 of every staged file to `data`, write the staged manifest (sealed with its digest),
        and load it back (checked)."""
        skip = {STAGED_MANIFEST, MANIFEST, SIGNATURE_FILE}
        files = sorted(p for p in self.dir.rglob("*") if p.is_file() and p.name not in skip)
        data = {**data, "files": {p.relative_to(self.dir).as_posix(): sha256_file(p) for p in files}}
        seal_manifest(self.dir, data, STAGED_MANIFEST)
        return load_manifest(self.dir, manifest_file=STAGED_MANIFEST)

    def commit(self) -> Path:
        """Move the staged bundle to `out_dir`; an old bundle there is removed after the swap."""
        check_replaceable(self.out)  # again: the build took minutes, something may have been put there
        os.replace(self.dir / STAGED_MANIFEST, self.dir / MANIFEST)
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists() or self.out.is_symlink():
            os.replace(self.out, old)
        os.replace(self.dir, self.out)
        self.committed = True
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
        return self.out


STAGED_MANIFEST = ".manifest.staged.json"  # a stage's manifest until commit renames it to manifest.json


def seal_manifest(folder: str | Path, data: dict, name: str = MANIFEST) -> dict:
    """Write `data` as `folder/name` with its digest (the bundle digest: manifest_digest), atomically.

    The one writer of manifests: the build, and tools that change a bundle on purpose (a signature, if
    any, no longer matches afterwards and is removed). Returns the sealed data.
    """
    try:  # the json form the digest is taken of; NaN / Infinity are not json
        data = json.loads(json.dumps(data, default=json_default, allow_nan=False))
    except ValueError as e:
        raise ExportError(f"the manifest of {folder} would hold a non-finite number ({e}); fix the value") from e
    data.pop(DIGEST_FIELD, None)
    data[DIGEST_FIELD] = manifest_digest(data)
    write_json(Path(folder) / name, data)
    sig = Path(folder) / SIGNATURE_FILE
    if name == MANIFEST and sig.is_file():
        sig.unlink()
    return data


def check_replaceable(out: Path) -> None:
    """BundleError unless `out` may be written by a build: absent, an empty folder, or a tdsm-edge bundle
    whose folder holds only its listed files (an old or incomplete bundle included). Reads nothing but its
    manifest.json."""

    def refuse(why: str) -> BundleError:
        return BundleError(
            f"refusing to write the bundle into {str(out)!r}: {why}; nothing was changed. Pass "
            "another --out, or move that folder away first"
        )

    if out.is_symlink() and not out.exists():
        raise refuse("it is a broken symlink")
    if not out.exists():
        return
    if not out.is_dir():
        raise refuse("it is a file, not a folder")
    if not any(out.iterdir()):
        return
    try:
        data = json.loads(bundle_files.read_file(out, MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise refuse(f"it holds files and no {MANIFEST}, so it is not an engine bundle") from None
    except (OSError, ValueError, RecursionError) as e:
        raise refuse(f"its {MANIFEST} is not a readable tdsm-edge manifest ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise refuse(
            f"its {MANIFEST} is not a tdsm-edge bundle manifest (format "
            f"{data.get('format') if isinstance(data, dict) else None!r})"
        )
    files = data["files"]
    if not all(isinstance(f, str) and isinstance(h, str) for f, h in files.items()):
        raise refuse(f"its {MANIFEST} does not list files with their sha256")
    problems = bundle_files.scan(out, set(files), report_missing=False)
    if problems:
        raise refuse(
            "besides its bundle files it holds "
            + "; ".join(problems[:3])
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        )
    for rel, digest in files.items():  # every file it lists and holds is the bundle's own: nothing else is deleted
        try:
            same = bundle_files.sha256_in(out, rel) == digest
        except FileNotFoundError:
            continue  # an incomplete bundle: what is missing is not lost
        except OSError as e:
            raise refuse(f"{rel} cannot be read ({e})") from e
        if not same:
            raise refuse(f"{rel} is not the file its {MANIFEST} records (a changed or foreign file)")


def remove_stale_temp_folders(out: Path) -> list[Path]:
    """Delete the temporary folders (`.<name>.staging-<pid>`, `.<name>.old-<pid>`) that builds of `out` killed
    before they finished left next to it; a folder whose build process is still running is kept."""
    removed = []
    for p in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")) if out.parent.is_dir() else ():
        m = TEMP_FOLDER.match(p.name)
        if not m or m["name"] != out.name or p.is_symlink() or not p.is_dir() or _alive(int(m["pid"])):
            continue
        if m["kind"] == "old" and not out.exists() and not out.is_symlink() and (p / MANIFEST).is_file():
            os.replace(p, out)  # a build died between its two renames: the previous bundle goes back in place
            log.warning("restored %s from %s, left by a build that died while committing", out, p)
            continue
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left by an interrupted build", p)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own leftover: not a running build
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):  # no permission: another user's running process
        return True
    return True
