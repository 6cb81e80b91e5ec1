"""A bundle's identity: the digest of its manifest, and an optional ed25519 signature of that digest.

    digest = manifest_digest(data)                  # "sha256:<64 hex>" of the manifest without its "digest" field
    verify_signature(root, digest, public_key)      # manifest.sig against a public key (needs `cryptography`)

The manifest lists the sha256 of every other file of the bundle, so the digest of the manifest
covers the whole bundle: a class name, a preprocessing flag or one byte of a graph changes it. The
build writes the digest into the manifest (`"digest"`), which catches an edit made without
recomputing it (a hand edit, a bad copy); against someone who recomputes it, pin the digest the build
printed (`ZeroShotRecognizer.load(path, digest=...)`) or sign the bundle (`python -m export.signing`)
and load with the public key (`public_key=...`).

`manifest.sig` (json): {"algorithm": "ed25519", "digest": "sha256:…", "signature": base64, "key_id": …}
signs the bytes `SIGNED_PREFIX + digest`. numpy-free; `cryptography` is imported only to check a
signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tdsm_edge.errors import BundleError, InputError, require

DIGEST_FIELD = "digest"
DIGEST_PREFIX = "sha256:"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
SIGNATURE_FILE = "manifest.sig"
SIGNATURE_ALGORITHM = "ed25519"
SIGNED_PREFIX = b"tdsm-edge bundle manifest "
MAX_SIGNATURE_BYTES = 4096


def canonical_json(data: Any) -> bytes:
    """The one byte form of a json value that digests are taken of: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def manifest_digest(data: dict) -> str:
    """`"sha256:<hex>"` of the manifest `data` without its own digest field (the bundle digest)."""
    body = {k: v for k, v in data.items() if k != DIGEST_FIELD}
    return DIGEST_PREFIX + hashlib.sha256(canonical_json(body)).hexdigest()


def check_pinned_digest(digest: object) -> str:
    """A `digest=` argument in canonical form ("sha256:<64 lower-case hex>"), or InputError."""
    if not isinstance(digest, str):
        raise InputError(
            f"digest must be the bundle digest string the build printed, e.g. 'sha256:3f5c…' (64 hex "
            f"digits), got {type(digest).__name__}"
        )
    d = digest.strip().lower()
    d = d if d.startswith(DIGEST_PREFIX) else DIGEST_PREFIX + d
    if not DIGEST_RE.match(d):
        raise InputError(
            f"digest {digest!r} is not a bundle digest: it must be 'sha256:' and 64 hex digits, as the "
            "build printed it (or manifest.json's \"digest\" field of a bundle you trust)"
        )
    return d


def signed_message(digest: str) -> bytes:
    return SIGNED_PREFIX + digest.encode("ascii")


def key_id(public_raw: bytes) -> str:
    """A short name of a public key (the first 16 hex digits of its sha256), recorded in manifest.sig."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def load_public_key(public_key):
    """An Ed25519PublicKey from a PEM / OpenSSH file path, PEM / OpenSSH bytes or the 32 raw key bytes."""
    require("cryptography", extra="sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    how = (
        "pass the public key the bundle was signed with: a path to its .pub file (PEM or OpenSSH), its bytes, or "
        "the 32 raw key bytes (python -m export.signing keygen writes one)"
    )
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if isinstance(public_key, (str, Path)):
        from tdsm_edge.io import read_user_file

        try:
            public_key = read_user_file(public_key, "public_key", max_bytes=1 << 16)
        except ValueError as e:
            raise InputError(f"{e}; {how}") from e
    if not isinstance(public_key, (bytes, bytearray)):
        raise InputError(f"public_key must be a path or bytes, got {type(public_key).__name__}; {how}")
    data = bytes(public_key)
    try:
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        key = (
            serialization.load_ssh_public_key(data)
            if data.startswith(b"ssh-")
            else serialization.load_pem_public_key(data)
        )
    except (ValueError, TypeError) as e:
        raise InputError(f"public_key is not a readable Ed25519 public key ({e}); {how}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"public_key is a {type(key).__name__}, not an Ed25519 key; {how}")
    return key


def public_raw(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_signature(raw: bytes) -> dict:
    """manifest.sig's content as a dict with a 64-byte "signature", or ValueError saying what is wrong."""
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"it is {len(raw)} bytes, a signature file is under {MAX_SIGNATURE_BYTES}")
    if raw.count(b"[") + raw.count(b"{") > 8:
        raise ValueError("it nests json values; a signature record is one flat object")
    d = json.loads(raw.decode("utf-8"))
    if not isinstance(d, dict) or d.get("algorithm") != SIGNATURE_ALGORITHM:
        raise ValueError(f"it is not an {SIGNATURE_ALGORITHM} signature record")
    if not isinstance(d.get("digest"), str) or not isinstance(d.get("signature"), str):
        raise ValueError("it lacks the digest or the signature")
    sig = base64.b64decode(d["signature"], validate=True)
    if len(sig) != 64:
        raise ValueError(f"its signature is {len(sig)} bytes, an Ed25519 signature is 64")
    return {**d, "signature": sig}


def verify_signature(sig_bytes: bytes | None, digest: str, public_key, where: str, fix: str) -> str:
    """Check manifest.sig (`sig_bytes`, None when absent) against `public_key` for this `digest`.

    Returns the key id that signed it. Raises BundleError naming the bundle (`where`) and `fix`.
    """
    key = load_public_key(public_key)
    from cryptography.exceptions import InvalidSignature

    if sig_bytes is None:
        raise BundleError(
            f"{where}: it is not signed ({SIGNATURE_FILE} is missing) but a public key was given. Sign "
            f"it with: python -m export.signing sign --bundle DIR --key KEY; {fix}"
        )
    try:
        record = parse_signature(sig_bytes)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(
            f"{where}: {SIGNATURE_FILE} is malformed ({type(e).__name__}: {str(e)[:200]}); sign the bundle again"
        ) from e
    if record["digest"] != digest:
        raise BundleError(
            f"{where}: {SIGNATURE_FILE} signs the digest {record['digest'][:19]}…, but the bundle's is "
            f"{digest[:19]}…: the bundle changed after it was signed; {fix}"
        )
    try:
        key.verify(record["signature"], signed_message(digest))
    except InvalidSignature as e:
        raise BundleError(
            f"{where}: the signature in {SIGNATURE_FILE} is not valid for the given public key (key id "
            f"{key_id(public_raw(key))}; the file names {record.get('key_id')!r}): the bundle was signed "
            f"with another key or altered; {fix}"
        ) from e
    return key_id(public_raw(key))
