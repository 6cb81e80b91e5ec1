"""A bundle is loaded only as it was built: the manifest's digest, its schema, the folder's content.

The tamper matrix: each edit a hostile or careless hand could make to a bundle, and the error that
refuses it before any graph runs. Raw edits of manifest.json break its digest; edits re-sealed with a
new digest (as someone who knows the format could) meet the schema and the consistency checks, and a
pinned digest or a signature.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from export.bundle_stage import seal_manifest
from tdsm_edge.errors import BundleError, InputError
from tdsm_edge.runtime import ZeroShotRecognizer, bundle_files
from tdsm_edge.runtime.manifest import MANIFEST, load_manifest


@pytest.fixture
def copy(runtime_bundle, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(runtime_bundle.dir, dst)
    return dst


def raw_edit(path: Path, fn) -> None:
    """Edit manifest.json as a text editor would: the recorded digest is left as it was."""
    data = json.loads((path / MANIFEST).read_text())
    fn(data)
    (path / MANIFEST).write_text(json.dumps(data, indent=2))


def sealed_edit(path: Path, fn) -> None:
    """Edit manifest.json and recompute its digest (someone who knows the format)."""
    data = json.loads((path / MANIFEST).read_text())
    fn(data)
    seal_manifest(path, data)


def swap_first_two(names: list) -> None:
    names[0], names[1] = names[1], names[0]


ANSWER_CHANGING_EDITS = {
    "swap two class names": lambda m: swap_first_two(m["classes"]["names"]),
    "rename a class": lambda m: m["classes"]["names"].__setitem__(0, "wave"),
    "flip preprocess.align_view": lambda m: m["skeleton"]["preprocess"].update(align_view=True),
    "change layout.center_joint": lambda m: m["skeleton"]["layout"].update(center_joint=0),
    "change the open-set threshold": lambda m: m.update(open_set={"threshold": 1e9, "num_classes": 5}),
    "change a file's recorded sha256": lambda m: m["files"].update({"tables.npz": "0" * 64}),
    "change the timestep": lambda m: m["scoring"].update(timestep=5),
}


@pytest.mark.parametrize("edit", list(ANSWER_CHANGING_EDITS))
def test_a_raw_edit_of_any_answer_changing_field_is_refused(copy, edit):
    raw_edit(copy, ANSWER_CHANGING_EDITS[edit])
    with pytest.raises(BundleError, match="manifest.json was changed after the build") as e:
        ZeroShotRecognizer.load(copy, threads=1)
    assert "\n" not in str(e.value)  # one line, with the rebuild command
    assert "Rebuild the bundle with: python -m export.build_engine" in str(e.value)


@pytest.mark.parametrize("edit", list(ANSWER_CHANGING_EDITS))
def test_a_resealed_edit_is_refused_by_the_pinned_digest(copy, edit, runtime_bundle):
    digest = load_manifest(runtime_bundle.dir).digest
    assert ZeroShotRecognizer.load(copy, threads=1, digest=digest).digest == digest
    sealed_edit(copy, ANSWER_CHANGING_EDITS[edit])
    with pytest.raises(BundleError, match=r"it is not the pinned build: its digest is sha256:\w+, the caller pinned"):
        ZeroShotRecognizer.load(copy, threads=1, digest=digest)


SCHEMA_EDITS = {  # re-sealed, so the digest holds: the schema must catch them, as BundleErrors naming the field
    "schema_version true": (lambda m: m.update(schema_version=True), r"manifest schema version True"),
    "class names as a string": (
        lambda m: m["classes"].update(names="abcde"),
        r"manifest\.classes\.names: expected a list, got a string 'abcde'",
    ),
    "a class name with a newline": (
        lambda m: m["classes"]["names"].__setitem__(0, "kick\nwave"),
        r"classes\.names\[0\]: class name .* holds control",
    ),
    "a class named 'none of these'": (
        lambda m: m["classes"]["names"].__setitem__(0, "none of these"),
        r"classes\.names\[0\]: 'none of these' is the open-set answer",
    ),
    "repeated class names": (
        lambda m: m["classes"]["names"].__setitem__(1, m["classes"]["names"][0]),
        r"classes\.names: items must be unique",
    ),
    "a string threshold": (
        lambda m: m.update(open_set={"threshold": "0.1", "num_classes": 5}),
        r"open_set\.threshold: expected a finite number, got a string",
    ),
    "a negative threshold": (
        lambda m: m.update(open_set={"threshold": -1, "num_classes": 5}),
        r"open_set\.threshold: expected a number in \[0",
    ),
    "an unknown preprocessing function": (
        lambda m: m["skeleton"]["preprocess"].update(function="os.system"),
        r"skeleton\.preprocess\.function: expected one of",
    ),
    "frames as a string": (
        lambda m: m["skeleton"]["preprocess"].update(frames="16"),
        r"skeleton\.preprocess\.frames: expected an int",
    ),
    "the layout as a number": (lambda m: m["skeleton"].update(layout=5), r"skeleton\.layout: expected an object"),
    "a centre joint beyond the layout": (
        lambda m: m["skeleton"]["layout"].update(center_joint=99),
        r"skeleton\.layout\.center_joint: they name joints beyond the layout's 25",
    ),
    "a bone beyond the layout": (
        lambda m: m["skeleton"]["layout"]["bones"].append([0, 30]),
        r"skeleton\.layout\.bones: they name joints beyond",
    ),
    "build without a command": (lambda m: m["build"].pop("command"), r"manifest\.build: lacks \['command'\]"),
    "build as a list": (lambda m: m.update(build=[]), r"manifest\.build: expected an object"),
    "an unknown top-level field": (lambda m: m.update(extra=1), r"unknown fields \['extra'\]"),
    "a file outside the bundle": (
        lambda m: m["files"].update({"../x.onnx": "0" * 64}),
        r"must name a file inside the bundle",
    ),
    "an absolute graph path": (
        lambda m: m["graphs"]["scorer"].update(file="/etc/passwd"),
        r"graphs\.scorer\.file: '/etc/passwd' must name a file inside the bundle",
    ),
    "the io spec as a string": (lambda m: m.update(io="x"), r"manifest\.io: expected an object"),
    "a tensor dtype unknown": (
        lambda m: m["io"]["graphs"]["scorer"]["inputs"][0].update(dtype="float64"),
        r"inputs\[0\]\.dtype: expected one of",
    ),
    "J as a float": (lambda m: m["scoring"].update(num_noises=2.0), r"scoring\.num_noises: expected an int"),
    "a listed file nothing uses": (
        lambda m: m["files"].update({"notes.txt": "0" * 64}),
        r"the files \['notes\.txt'\]: they are listed but no graph",
    ),
}


@pytest.mark.parametrize("edit", list(SCHEMA_EDITS))
def test_malformed_fields_are_bundle_errors_naming_the_field(copy, edit):
    fn, match = SCHEMA_EDITS[edit]
    sealed_edit(copy, fn)
    with pytest.raises(BundleError, match=match) as e:
        ZeroShotRecognizer.load(copy, threads=1)
    assert "\n" not in str(e.value)


def test_malformed_json_and_nan_are_bundle_errors(copy):
    original = (copy / MANIFEST).read_text()
    for text, match in (
        ('{"a": NaN}', "NaN is not a json number"),
        ("[" * 100_000, "RecursionError"),
        ('{"a": 1, "a": 2}', r"repeated keys \['a'\]"),
        ("\xff\xfe", "not valid json"),
        ("[]", "not a json object"),
    ):
        (copy / MANIFEST).write_bytes(text.encode("latin-1"))
        with pytest.raises(BundleError, match=match):
            load_manifest(copy)
    data = json.loads(original)
    data["open_set"] = {"threshold": float("nan"), "num_classes": 5}
    (copy / MANIFEST).write_text(json.dumps(data))  # json.dumps writes NaN; the reader refuses it
    with pytest.raises(BundleError, match="NaN is not a json number"):
        load_manifest(copy)


def test_a_missing_build_command_does_not_mask_the_real_error(copy):
    """With build.command gone (a raw edit), the digest error is the one reported, with how to build a bundle."""
    raw_edit(copy, lambda m: m["build"].pop("command"))
    with pytest.raises(
        BundleError, match="changed after the build.*Build a bundle with: python -m export.build_engine"
    ):
        load_manifest(copy)


# ------------------------------------------------------------------ the folder's content
def test_symlinks_are_refused_before_anything_is_read(copy, tmp_path, monkeypatch):
    hashed = []
    real = bundle_files.sha256_in
    monkeypatch.setattr(bundle_files, "sha256_in", lambda root, rel, *a: hashed.append(rel) or real(root, rel, *a))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(copy / "scorer_fp32.onnx", outside / "scorer_fp32.onnx")
    os.symlink(outside / "scorer_fp32.onnx", copy / "scorer_fp32.onnx")  # same bytes, but outside the bundle
    with pytest.raises(BundleError, match="scorer_fp32.onnx is a symlink"):
        ZeroShotRecognizer.load(copy, threads=1)
    assert hashed == []  # refused before any file was hashed
    os.unlink(copy / "scorer_fp32.onnx")
    os.symlink("/etc/passwd", copy / "scorer_fp32.onnx")
    with pytest.raises(BundleError, match="scorer_fp32.onnx is a symlink"):
        ZeroShotRecognizer.load(copy, threads=1)
    assert hashed == []


def test_a_symlinked_folder_or_manifest_is_refused(copy, tmp_path):
    shutil.move(copy / "reference", tmp_path / "reference")
    os.symlink(tmp_path / "reference", copy / "reference")
    with pytest.raises(BundleError, match="reference is a symlink"):
        load_manifest(copy)
    os.unlink(copy / "reference")
    shutil.move(tmp_path / "reference", copy / "reference")
    load_manifest(copy)
    shutil.move(copy / MANIFEST, tmp_path / MANIFEST)
    os.symlink(tmp_path / MANIFEST, copy / MANIFEST)
    with pytest.raises(BundleError, match="manifest.json cannot be read: .*symlink"):
        load_manifest(copy)


def test_a_symlinked_bundle_folder_is_allowed(runtime_bundle, tmp_path):
    """engines/current -> engines/v3: the folder link is resolved once, everything below must be real."""
    os.symlink(runtime_bundle.dir, tmp_path / "current")
    assert ZeroShotRecognizer.load(tmp_path / "current", threads=1).classes == runtime_bundle.names


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_special_files_are_refused_without_blocking(copy):
    os.unlink(copy / "tables.npz")
    os.mkfifo(copy / "tables.npz")  # opening a FIFO for reading would block forever
    with pytest.raises(BundleError, match="tables.npz is a FIFO, not a regular file"):
        load_manifest(copy)


def test_unlisted_files_and_folders_are_refused(copy):
    (copy / "notes.txt").write_text("hello")
    with pytest.raises(BundleError, match="notes.txt is not listed in the manifest"):
        load_manifest(copy)
    (copy / "notes.txt").unlink()
    (copy / "extra").mkdir()
    with pytest.raises(BundleError, match="extra/ is a folder the manifest does not list"):
        load_manifest(copy)
    (copy / "extra").rmdir()
    (copy / "reference" / "evil.npy").write_bytes(b"x")
    with pytest.raises(BundleError, match="reference/evil.npy is not listed"):
        load_manifest(copy)


def test_an_unlisted_external_data_file_is_refused(copy, tmp_path, monkeypatch):
    """A graph re-saved with its weights in a side file: unlisted, the side file is refused by the scan;
    listed but not named by the graph's record, by the consistency check; and a graph loaded from bytes
    resolves external data in the bundle folder, never in the working directory."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(copy / "scorer_fp32.onnx"))
    onnx.save_model(
        model, str(copy / "scorer_fp32.onnx"), save_as_external_data=True, location="w.bin", size_threshold=1024
    )
    data = json.loads((copy / MANIFEST).read_text())
    data["files"]["scorer_fp32.onnx"] = bundle_files.sha256_in(copy, "scorer_fp32.onnx")
    seal_manifest(copy, data)
    with pytest.raises(BundleError, match="w.bin is not listed in the manifest"):
        load_manifest(copy)
    data["files"]["w.bin"] = bundle_files.sha256_in(copy, "w.bin")
    seal_manifest(copy, data)
    with pytest.raises(BundleError, match=r"the files \['w.bin'\]: they are listed but no graph"):
        load_manifest(copy)
    data["graphs"]["scorer"]["files"] = ["scorer_fp32.onnx", "w.bin"]  # declared: loaded by path, hashed first
    seal_manifest(copy, data)
    rec = ZeroShotRecognizer.load(copy, threads=1)
    z = np.zeros((1, rec._scorer.z_dim), np.float32)
    before = rec.score_features(z)
    with open(copy / "w.bin", "r+b") as f:  # changed after loading: the next open of the graph is refused
        f.seek(100)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(BundleError, match="w.bin has sha256"):
        ZeroShotRecognizer.load(copy, threads=1)
    np.testing.assert_array_equal(rec.score_features(z), before)  # the loaded session keeps the checked weights


def test_a_file_changed_after_loading_is_refused_when_read(copy):
    m = load_manifest(copy)
    with open(copy / "tables.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(
        BundleError, match="tables.npz has sha256 .* changed after the build \\(or after the bundle was loaded\\)"
    ):
        m.read_bytes("tables.npz")


def test_temporary_build_folders_are_never_loadable(runtime_bundle, tmp_path):
    for name in (".tiny.staging-12345", ".tiny.old-777"):
        shutil.copytree(runtime_bundle.dir, tmp_path / name)
        with pytest.raises(BundleError, match="temporary folder of an unfinished or interrupted build of 'tiny'"):
            ZeroShotRecognizer.load(tmp_path / name, threads=1)


def test_manifest_is_readable_by_everyone_who_may_read_the_folder(runtime_bundle):
    umask = os.umask(0)
    os.umask(umask)
    for p in (runtime_bundle.dir / MANIFEST, runtime_bundle.dir / "tables.npz"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p.name


# ------------------------------------------------------------------ pinning and signing
def test_digest_argument_is_checked(runtime_bundle):
    m = load_manifest(runtime_bundle.dir)
    hexdigits = m.digest.removeprefix("sha256:")
    assert ZeroShotRecognizer.load(runtime_bundle.dir, threads=1, digest=hexdigits.upper()).digest == m.digest
    for bad in ("sha256:1234", 5, "md5:" + hexdigits):
        with pytest.raises(InputError, match="digest"):
            ZeroShotRecognizer.load(runtime_bundle.dir, threads=1, digest=bad)
    with pytest.raises(BundleError, match="not the pinned build"):
        ZeroShotRecognizer.load(runtime_bundle.dir, threads=1, digest="sha256:" + "0" * 64)


def test_signed_bundles_load_only_with_their_key(copy, tmp_path):
    pytest.importorskip("cryptography")
    from export.signing import keygen
    from export.signing import main as signing_main

    key, pub = keygen(tmp_path / "keys" / "robot")
    other_key, other_pub = keygen(tmp_path / "keys" / "other")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(BundleError, match="it is not signed"):
        ZeroShotRecognizer.load(copy, threads=1, public_key=pub)
    assert signing_main(["--log-level", "ERROR", "sign", "--bundle", str(copy), "--key", str(key)]) == 0
    rec = ZeroShotRecognizer.load(copy, threads=1, public_key=pub)
    assert ZeroShotRecognizer.load(copy, threads=1).digest == rec.digest  # no key: the signature is not needed
    assert ZeroShotRecognizer.load(copy, threads=1, public_key=pub.read_bytes()).digest == rec.digest
    with pytest.raises(BundleError, match="not valid for the given public key"):
        ZeroShotRecognizer.load(copy, threads=1, public_key=other_pub)
    sig = (copy / "manifest.sig").read_text()
    sealed_edit(copy, lambda m: swap_first_two(m["classes"]["names"]))  # re-sealed, and the old signature put back
    (copy / "manifest.sig").write_text(sig)
    with pytest.raises(BundleError, match="the bundle changed after it was signed"):
        ZeroShotRecognizer.load(copy, threads=1, public_key=pub)
    (copy / "manifest.sig").write_text("{}")
    with pytest.raises(BundleError, match="manifest.sig is malformed"):
        ZeroShotRecognizer.load(copy, threads=1, public_key=pub)
    for bad in (123, tmp_path / "missing.pub", b"not a key"):
        with pytest.raises(InputError, match="public_key"):
            ZeroShotRecognizer.load(copy, threads=1, public_key=bad)
    assert signing_main(["sign", "--bundle", str(copy), "--key", str(tmp_path / "nokey")]) == 2
    with pytest.raises(Exception, match="exist already"):
        keygen(tmp_path / "keys" / "robot")


# ------------------------------------------------------------------ found by a hostile review
def test_every_file_of_a_bundle_has_the_ordinary_mode(runtime_bundle):
    """safetensors writes its files 0600; the build gives every file 0666 less the umask, so a robot's
    service account can load a bundle another user built."""
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in runtime_bundle.dir.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.relative_to(runtime_bundle.dir).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(runtime_bundle.dir).as_posix(): oct(0o666 & ~umask) for p in files
    }


def test_an_external_data_graph_is_opened_from_a_private_checked_copy(copy, monkeypatch):
    """ONNX Runtime opens side files itself: it gets a private 0700 copy made of hashed bytes, never the
    bundle's files, so nothing can be swapped in between the check and the read."""
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    onnx.save_model(
        onnx.load(str(copy / "scorer_fp32.onnx")),
        str(copy / "scorer_fp32.onnx"),
        save_as_external_data=True,
        location="w.bin",
        size_threshold=1024,
    )
    data = json.loads((copy / MANIFEST).read_text())
    data["files"].update({f: bundle_files.sha256_in(copy, f) for f in ("scorer_fp32.onnx", "w.bin")})
    data["graphs"]["scorer"]["files"] = ["scorer_fp32.onnx", "w.bin"]
    seal_manifest(copy, data)
    opened, real = [], ort.InferenceSession

    def spy(source, *a, **k):
        if isinstance(source, str):
            folder = Path(source).parent
            opened.append((folder, stat.S_IMODE(folder.stat().st_mode), sorted(p.name for p in folder.iterdir())))
        return real(source, *a, **k)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    ZeroShotRecognizer.load(copy, threads=1, backend="onnxruntime")
    ((folder, mode, names),) = opened
    assert copy.resolve() not in folder.resolve().parents and folder.resolve() != copy.resolve()
    assert mode == 0o700 and names == ["scorer_fp32.onnx", "w.bin"]
    assert not folder.exists()  # deleted once the session was made


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"a": 1e400}', "out of the range of a float"),
        ('{"verify": ' + "[" * 40 + "]" * 40 + "}", "nests deeper than 32 levels"),
    ],
)
def test_numbers_and_nesting_json_accepts_are_still_refused(copy, text, match):
    (copy / MANIFEST).write_text(text)
    with pytest.raises(BundleError, match=match):
        load_manifest(copy)


def test_a_deeply_nested_signature_file_is_a_bundle_error(copy, tmp_path):
    pytest.importorskip("cryptography")
    from export.signing import keygen

    _, pub = keygen(tmp_path / "k")
    (copy / "manifest.sig").write_text("[" * 3000 + "]" * 3000)
    with pytest.raises(BundleError, match="manifest.sig is malformed"):
        ZeroShotRecognizer.load(copy, threads=1, public_key=pub)


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda m: m.update(open_set={"threshold": 10**400, "num_classes": 5}),
            r"open_set\.threshold: expected a finite number, got an int of 401 digits",
        ),
        (lambda m: m["build"].update(command="python -m x\nFAKE LOG LINE \x1b[31m"), r"build\.command: .* control"),
        (lambda m: m["classes"]["names"].__setitem__(0, "n\u043ene of these"), "mixes CYRILLIC and LATIN"),
    ],
)
def test_resealed_values_a_json_reader_accepts_are_refused(copy, edit, match):
    sealed_edit(copy, edit)
    with pytest.raises(BundleError, match=match) as e:
        ZeroShotRecognizer.load(copy, threads=1)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_size", 0),
        ("num_heads", 0),
        ("depth", 2**70),
        ("z_dim", 2**70),
        ("mlp_ratio", -1.0),
        ("hidden_size", "32"),
    ],
)
def test_the_torch_backend_refuses_a_resealed_model_config(copy, field, value):
    pytest.importorskip("torch")
    sealed_edit(copy, lambda m: m["model"]["denoiser"].update({field: value}))
    # depth is checked with the variant for every backend (model.denoiser.depth), the rest when torch rebuilds
    match = rf"(the model section: cannot rebuild the denoiser config.*{field}|model\.denoiser\.{field}: )"
    with pytest.raises(BundleError, match=match):
        ZeroShotRecognizer.load(copy, threads=1, backend="torch")


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize(
    "value, match",
    [
        ("decoupled", r"model\.denoiser: a decoupled denoiser of depth \d+ reads the class tables \[.*'text_kv'"),
        ("sideways", r"model\.denoiser\.attention: 'sideways' is not one of \['joint', 'decoupled'\]"),
        (None, r"model\.denoiser\.attention: None is not one of"),
    ],
)
def test_a_resealed_variant_that_does_not_fit_the_scorer_is_refused(copy, backend, value, match):
    """The manifest says which variant a bundle holds; a variant whose tables are not the scorer's inputs
    is refused at load, on every backend (before: ORT loaded it, torch gave a raw KeyError)."""
    if backend == "torch":
        pytest.importorskip("torch")
    sealed_edit(copy, lambda m: m["model"]["denoiser"].update(attention=value))
    with pytest.raises(BundleError, match=match) as e:
        ZeroShotRecognizer.load(copy, threads=1, backend=backend)
    assert "\n" not in str(e.value)


def test_the_torch_backend_refuses_resealed_reference_weights_that_do_not_fit(copy):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    rel = "reference/denoiser/model.safetensors"
    state = load_file(str(copy / rel))
    D, Dz = state["x_embedder.weight"].shape
    state["x_embedder.weight"] = torch.zeros(D, Dz + 1)  # one input column too many
    save_file(state, str(copy / rel))
    data = json.loads((copy / MANIFEST).read_text())
    data["files"][rel] = bundle_files.sha256_in(copy, rel)
    seal_manifest(copy, data)
    with pytest.raises(
        BundleError,
        match=rf"reference/denoiser: .*1 shape mismatches: \['x_embedder.weight: "
        rf"checkpoint \({D}, {Dz + 1}\) vs model \({D}, {Dz}\)'\]\)\. Rebuild",
    ) as e:
        ZeroShotRecognizer.load(copy, threads=1, backend="torch")
    assert "\n" not in str(e.value)


def test_a_tables_archive_holds_only_the_scorer_tables_and_is_never_inflated(copy):
    with np.load(copy / "tables.npz") as z:
        tables = {n: z[n] for n in z.files}
    for extra, match in (
        ({"bomb": np.zeros(1 << 20, np.float32)}, r"it holds \['ada_c.npy'"),
        ({"ada_x": np.zeros((2, 2), np.float64)}, r"class table 'ada_x': it is float64 \(2, 2\)"),
    ):
        np.savez_compressed(copy / "tables.npz", **{**tables, **extra})
        data = json.loads((copy / MANIFEST).read_text())
        data["files"]["tables.npz"] = bundle_files.sha256_in(copy, "tables.npz")
        seal_manifest(copy, data)
        with pytest.raises(BundleError, match=match):
            ZeroShotRecognizer.load(copy, threads=1)


def test_temporary_folders_are_refused_by_their_real_path(runtime_bundle, tmp_path, monkeypatch):
    stage = tmp_path / ".tiny.staging-4242"
    shutil.copytree(runtime_bundle.dir, stage)
    os.symlink(stage, tmp_path / "innocent")
    for path in (stage / "reference" / "..", tmp_path / "innocent"):
        with pytest.raises(BundleError, match="temporary folder"):
            ZeroShotRecognizer.load(path, threads=1)
    monkeypatch.chdir(stage)
    with pytest.raises(BundleError, match="temporary folder"):
        ZeroShotRecognizer.load(".", threads=1)
    with pytest.raises(BundleError, match="the path cannot be resolved|does not exist"):
        ZeroShotRecognizer.load("/tmp/" + "a" * 300, threads=1)
