"""Prompt sets, ClassText and the on-disk text cache, with a fast fake encoder (numpy only)."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest

from tdsm_edge.errors import CheckpointError, ConfigError
from tdsm_edge.text import ClassPrompts, ClassText, TextCache, TextEncoder, encode_classes, prompt_texts

pytest.importorskip("safetensors")

CLASSES = [
    ClassPrompts("wave", "a person raises one hand and waves it from side to side"),
    ClassPrompts("kick with left leg", "a person kicks forward with the left leg"),
    ClassPrompts("sit down", "a person bends the knees and sits down on a chair"),
]


class CountingEncoder(TextEncoder):
    """Deterministic fake: one token per word plus two specials; counts prompts it encodes."""

    def __init__(self, encoder_id: str = "fake:v1", dim: int = 6) -> None:
        self.encoder_id, self.dim = encoder_id, dim
        self.encoded: list[str] = []

    def _encode_batch(self, prompts, num_tokens):
        self.encoded.extend(prompts)
        b, L, D = len(prompts), num_tokens, self.dim
        local = np.zeros((b, L, D), np.float32)
        mask = np.zeros((b, L), bool)
        glob = np.zeros((b, D), np.float32)
        for i, p in enumerate(prompts):
            rng = np.random.default_rng(zlib.crc32(p.encode()))
            n = min(len(p.split()) + 2, L)
            local[i, :n] = rng.standard_normal((n, D))
            local[i, n:] = 7.0  # junk in pads: the base class must zero it
            mask[i, :n] = True
            glob[i] = rng.standard_normal(D)
        return glob, local, mask


# --------------------------------------------------------------------------------------- prompts
def test_prompt_texts():
    assert prompt_texts(CLASSES, "label") == ["wave", "kick with left leg", "sit down"]
    assert prompt_texts(CLASSES, "description")[1] == "a person kicks forward with the left leg"
    with pytest.raises(ConfigError, match="label, description"):
        prompt_texts(CLASSES, "synonyms")


def test_encode_zeroes_padding():
    f = CountingEncoder().encode(["wave"], num_tokens=5)
    assert f.mask[0].tolist() == [True, True, True, False, False]
    assert np.all(f.local[0, 3:] == 0.0)


def test_encode_classes_concatenates_sets():
    enc = CountingEncoder()
    L = 6
    table = encode_classes(enc, CLASSES, ("label", "description"), num_tokens=L)
    K, D = len(CLASSES), enc.dim
    assert table.global_.shape == (K, 2 * D) and table.local.shape == (K, L, 2 * D)
    assert table.names == ("wave", "kick with left leg", "sit down")
    assert table.prompt_sets == ("label", "description") and table.encoder_id == "fake:v1"
    label = CountingEncoder().encode(prompt_texts(CLASSES, "label"), L)
    desc = CountingEncoder().encode(prompt_texts(CLASSES, "description"), L)
    np.testing.assert_array_equal(table.global_[:, :D], label.global_)
    np.testing.assert_array_equal(table.global_[:, D:], desc.global_)
    np.testing.assert_array_equal(table.local[..., :D], label.local)
    np.testing.assert_array_equal(table.mask, label.mask | desc.mask)
    # "wave" has 3 label tokens but 6 description tokens: its label channels are zero after slot 3
    assert table.mask[0].all() and np.all(table.local[0, 3:, :D] == 0.0)
    with pytest.raises(ConfigError):
        encode_classes(enc, CLASSES, ("label", "nope"))


def test_class_text_subset_and_roundtrip(tmp_path):
    table = encode_classes(CountingEncoder(), CLASSES, num_tokens=4)
    sub = table.subset([2, 0])
    assert sub.names == ("sit down", "wave")
    np.testing.assert_array_equal(sub.local[1], table.local[0])
    with pytest.raises(ConfigError):
        table.subset([3])
    path = tmp_path / "classes.safetensors"
    table.save(path)
    assert b"pickle" not in path.read_bytes()[:200]
    back = ClassText.load(path)
    assert back.names == table.names and back.encoder_id == table.encoder_id
    assert back.prompt_sets == table.prompt_sets and back.mask.dtype == bool
    np.testing.assert_array_equal(back.global_, table.global_)
    np.testing.assert_array_equal(back.local, table.local)
    np.testing.assert_array_equal(back.mask, table.mask)
    with pytest.raises(CheckpointError):
        ClassText.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError):
        ClassText.load(tmp_path / "junk.safetensors")


# ----------------------------------------------------------------------------------------- cache
def test_cache_second_call_skips_model(tmp_path):
    enc = CountingEncoder()
    prompts = ["wave", "sit down", "wave", "kick with left leg"]
    first = TextCache(tmp_path).encode(enc, prompts, num_tokens=5)
    assert sorted(enc.encoded) == sorted(set(prompts))  # duplicates encoded once
    enc.encoded.clear()
    second = TextCache(tmp_path).encode(enc, prompts, num_tokens=5)
    assert enc.encoded == []
    direct = CountingEncoder().encode(prompts, num_tokens=5)
    for f in (first, second):
        np.testing.assert_array_equal(f.global_, direct.global_)
        np.testing.assert_array_equal(f.local, direct.local)
        np.testing.assert_array_equal(f.mask, direct.mask)
    # only the new prompt reaches the model
    TextCache(tmp_path).encode(enc, ["wave", "stand up"], num_tokens=5)
    assert enc.encoded == ["stand up"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_cache_key_depends_on_encoder_and_length(tmp_path):
    cache = TextCache(tmp_path)
    a, b = CountingEncoder("fake:v1"), CountingEncoder("fake:v2")
    cache.encode(a, ["wave"], num_tokens=5)
    cache.encode(b, ["wave"], num_tokens=5)
    assert b.encoded == ["wave"]
    a.encoded.clear()
    f = cache.encode(a, ["wave"], num_tokens=7)
    assert a.encoded == ["wave"] and f.local.shape == (1, 7, 6)
    paths = {cache.entry_path(e, L, "wave") for e, L in [("fake:v1", 5), ("fake:v2", 5), ("fake:v1", 7)]}
    assert len(paths) == 3 and all(p.is_file() for p in paths)
    assert cache.entry_path("fake:v1", 5, "wave") != cache.entry_path("fake:v1", 5, "wave ")


def test_cache_recovers_from_corrupt_entry(tmp_path, caplog):
    enc = CountingEncoder()
    cache = TextCache(tmp_path)
    good = cache.encode(enc, ["wave", "sit down"], num_tokens=5)
    path = cache.entry_path(enc.encoder_id, 5, "wave")
    path.write_bytes(path.read_bytes()[:40])  # truncated file
    enc.encoded.clear()
    with caplog.at_level(logging.WARNING, logger="tdsm_edge.text.cache"):
        again = cache.encode(enc, ["wave", "sit down"], num_tokens=5)
    assert enc.encoded == ["wave"]
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again.local, good.local)
    enc.encoded.clear()
    cache.encode(enc, ["wave"], num_tokens=5)  # rewritten entry is good again
    assert enc.encoded == []


def test_encode_classes_uses_cache(tmp_path):
    enc = CountingEncoder()
    t1 = encode_classes(enc, CLASSES, num_tokens=4, cache_dir=tmp_path)
    assert len(enc.encoded) == 2 * len(CLASSES)
    enc.encoded.clear()
    t2 = encode_classes(enc, CLASSES, num_tokens=4, cache_dir=tmp_path)
    assert enc.encoded == []
    np.testing.assert_array_equal(t1.local, t2.local)
