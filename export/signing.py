"""python -m export.signing — Ed25519 keys and bundle signatures (the `cryptography` package).

    python -m export.signing keygen --out keys/robot          # keys/robot.key (private, mode 0600) + keys/robot.pub
    python -m export.signing sign --bundle engines/demo --key keys/robot.key    # writes engines/demo/manifest.sig
    python -m export.build_engine ... --sign-key keys/robot.key                 # or sign while building

A signature covers the bundle digest (the sha256 of manifest.json, which lists the sha256 of every
other file), so it covers the whole bundle. The robot loads with the public key:
`ZeroShotRecognizer.load("engines/demo", public_key="keys/robot.pub")`, and refuses an unsigned, altered
or foreign-signed bundle. Keep the private key off the robot.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
from pathlib import Path

from tdsm_edge.cli import HelpFormatter, add_log_level, exit_main, run_main, setup_logging
from tdsm_edge.errors import ConfigError, require
from tdsm_edge.io import atomic_path, read_user_file
from tdsm_edge.runtime.integrity import SIGNATURE_ALGORITHM, SIGNATURE_FILE, key_id, public_raw, signed_message

log = logging.getLogger("export.signing")


def load_private_key(path: str | Path):
    """The Ed25519 private key in a PEM file (unencrypted; as `keygen` writes it)."""
    require("cryptography", extra="sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = read_user_file(path, "the signing key", ConfigError, max_bytes=1 << 16)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"{str(path)!r} is not an unencrypted PEM private key ({e}); make one with: "
            "python -m export.signing keygen --out KEYS/NAME"
        ) from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{str(path)!r} holds a {type(key).__name__}; bundles are signed with Ed25519 keys "
            "(python -m export.signing keygen)"
        )
    return key


def keygen(out: str | Path) -> tuple[Path, Path]:
    """Write a new key pair: `<out>.key` (PEM PKCS8, mode 0600) and `<out>.pub` (PEM). Refuses to overwrite."""
    require("cryptography", extra="sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not str(out).strip() or Path(out).name in ("", ".", ".."):
        raise ConfigError(f"--out {str(out)!r} must name the key files' prefix, e.g. keys/robot")
    out = Path(out)
    private, public = out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        raise ConfigError(f"{existing} exist already; choose another --out (keys are never overwritten)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with atomic_path(public) as tmp:
        tmp.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private, public


def sign_folder(folder: str | Path, digest: str, key_path: str | Path) -> Path:
    """Write `folder/manifest.sig`: the Ed25519 signature of `digest` by the key in `key_path`."""
    key = load_private_key(key_path)
    record = {
        "algorithm": SIGNATURE_ALGORITHM,
        "digest": digest,
        "signature": base64.b64encode(key.sign(signed_message(digest))).decode("ascii"),
        "key_id": key_id(public_raw(key.public_key())),
    }
    path = Path(folder) / SIGNATURE_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    log.info("signed %s with key %s", digest, record["key_id"])
    return path


def sign_bundle(bundle_dir: str | Path, key_path: str | Path) -> str:
    """Sign an existing bundle (checked first: a bundle that does not load is not signed). Returns its digest."""
    from tdsm_edge.runtime.manifest import load_manifest

    load_private_key(key_path)  # a bad key fails before the bundle is read
    m = load_manifest(bundle_dir)
    sign_folder(m.root, m.digest, key_path)
    return m.digest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.signing", description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    k = sub.add_parser("keygen", help="write a new Ed25519 key pair", formatter_class=HelpFormatter)
    k.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.key (private) and PREFIX.pub")
    s = sub.add_parser("sign", help="sign a built bundle (writes its manifest.sig)", formatter_class=HelpFormatter)
    s.add_argument("--bundle", required=True, metavar="DIR", help="the bundle folder")
    s.add_argument("--key", required=True, metavar="FILE", help="the private key (PEM) from keygen")
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)

    def run() -> int:
        if args.command == "keygen":
            private, public = keygen(args.out)
            print(
                f"wrote {private} (keep it off the robot) and {public} (give it to ZeroShotRecognizer.load(..., "
                "public_key=...))"
            )
        else:
            digest = sign_bundle(args.bundle, args.key)
            print(f"signed {args.bundle}: bundle digest {digest}")
        return 0

    return run_main(run, log, interrupted="interrupted; nothing was signed")


if __name__ == "__main__":
    exit_main(main())


__all__ = ["keygen", "load_private_key", "sign_bundle", "sign_folder"]
