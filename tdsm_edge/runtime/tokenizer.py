"""BERT WordPiece tokenization in pure Python (numpy for the output): the runtime's text side without `tokenizers`.

    tok = WordPieceTokenizer.from_vocab("engines/demo/vocab.txt", max_length=256)
    ids, mask = tok.batch(["wave twice", "a person waves both hands"], min_length=16)  # (P, S) int64 each

Reproduces the `tokenizers` pipeline of a BERT `tokenizer.json` (MiniLM's): added special tokens
matched in the raw text first, then per remaining piece
    BertNormalizer      clean text (drop NUL, U+FFFD and control characters, map whitespace to " "),
                        spaces around CJK ideographs, strip accents (NFD, drop non-spacing marks),
                        lowercase — in that order, character by character (no final-sigma rule)
    BertPreTokenizer    split on whitespace (dropped) and on punctuation (each mark its own word):
                        ASCII punctuation plus the Unicode P* categories
    WordPiece           greedy longest-match-first against the vocabulary, continuations prefixed
                        "##"; a word longer than 100 characters or with an unmatchable rest is [UNK]
    TemplateProcessing  [CLS] … [SEP], the content truncated to max_length - 2 tokens

Which characters are control characters, non-spacing marks or punctuation comes from `_bert_chars.py`,
a table probed from `tokenizers` itself (`python -m export.bert_chars`): its Rust crates carry an older
Unicode version than Python's `unicodedata`, and the table makes every code point agree whatever the
Python version. NFD and lowercasing use `unicodedata` / `str.lower` (checked on every code point by
tests/runtime/test_tokenizer.py).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdsm_edge.config import dataclass_from_dict
from tdsm_edge.errors import ConfigError, InputError

from ._bert_chars import CONTROL, NONSPACING_MARK, PUNCTUATION

# Rust's char::is_whitespace (the Unicode White_Space property), which tokenizers uses
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
# CJK Unified Ideographs blocks, as tokenizers' BertNormalizer lists them
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


@dataclass(frozen=True)
class TokenizerSettings:
    """What a BERT tokenizer file configures (recorded in a bundle's manifest, `text.tokenizer`)."""

    lowercase: bool = True  # BertNormalizer.lowercase
    strip_accents: bool | None = True  # BertNormalizer.strip_accents (null in tokenizer.json = lowercase; the
    # exporter resolves it, a manifest's null reads as False)
    clean_text: bool = True
    handle_chinese_chars: bool = True
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    pad_token: str = "[PAD]"
    continuing_subword_prefix: str = "##"
    max_input_chars_per_word: int = 100
    special_tokens: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # matched in the raw text

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerSettings:
        """The settings `to_dict` wrote (a manifest's `text.runtime.tokenizer`), typed by the config parser;
        ConfigError for a key this runtime does not know or a value of the wrong type."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:  # said here, not by the parser: the likely cause is a bundle newer than this runtime
            raise ConfigError(
                f"unknown tokenizer settings {unknown}; this runtime knows "
                f"{sorted(cls.__dataclass_fields__)} (a newer bundle format?)"
            )
        return dataclass_from_dict(cls, d, "tokenizer settings")


@dataclass
class WordPieceTokenizer:
    """A BERT WordPiece tokenizer over `vocab` (token → id), with `settings`, truncating to `max_length`."""

    vocab: dict[str, int]
    max_length: int
    settings: TokenizerSettings = field(default_factory=TokenizerSettings)

    def __post_init__(self) -> None:
        s = self.settings
        needed = {s.unk_token, s.cls_token, s.sep_token, s.pad_token, *s.special_tokens}
        missing = sorted(t for t in needed if t not in self.vocab)
        if missing:
            raise ConfigError(f"the vocabulary has no {missing}; it is not the vocabulary of this BERT tokenizer")
        if self.max_length < 3:
            raise ConfigError(f"max_length must be >= 3 ([CLS], one token, [SEP]), got {self.max_length}")
        # longest first, so that e.g. "[MASK]" wins over a shorter token that starts the same way
        self._special = sorted(s.special_tokens, key=len, reverse=True)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_vocab(
        cls, source: str | Path | bytes, max_length: int, settings: TokenizerSettings | None = None
    ) -> WordPieceTokenizer:
        """Read a BERT `vocab.txt` (one token a line; the line number is its id): a path, or the file's bytes."""
        try:
            raw = source if isinstance(source, bytes) else Path(source).read_bytes()
            lines = raw.decode("utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            where = "" if isinstance(source, bytes) else f" {str(source)!r}"
            raise ConfigError(f"cannot read the vocabulary{where}: {e}") from e
        if lines and lines[-1] == "":
            lines.pop()
        vocab: dict[str, int] = {}
        for i, tok in enumerate(lines):
            vocab.setdefault(tok.rstrip("\r"), i)
        return cls(vocab, int(max_length), settings or TokenizerSettings())

    # ------------------------------------------------------------ public
    def encode(self, text: str) -> list[int]:
        """Token ids of one text: [CLS] … [SEP], at most `max_length` of them."""
        if not isinstance(text, str):
            raise InputError(f"a prompt must be a str, got {type(text).__name__}: {text!r}")
        s = self.settings
        ids = [
            i
            for piece, special in self._split_special(text)
            for i in ([self.vocab[piece]] if special else self._encode_piece(piece))
        ]
        ids = ids[: self.max_length - 2]
        return [self.vocab[s.cls_token], *ids, self.vocab[s.sep_token]]

    def tokens(self, text: str) -> list[str]:
        """The tokens of `encode(text)` as strings (for reading and debugging)."""
        inv = {i: t for t, i in self.vocab.items()}
        return [inv[i] for i in self.encode(text)]

    def batch(self, texts: Sequence[str], min_length: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Ids and attention mask of P texts, right-padded with [PAD] to S = max(min_length, longest).

        Returns:
            ids `(P, S) int64` and mask `(P, S) int64` (1 real token, 0 padding).
        """
        if isinstance(texts, str):
            raise InputError("batch() takes a list of texts, got one string; wrap it in a list")
        encoded = [self.encode(t) for t in texts]
        S = max([int(min_length), *map(len, encoded)])
        ids = np.full((len(encoded), S), self.vocab[self.settings.pad_token], np.int64)  # (P, S)
        mask = np.zeros((len(encoded), S), np.int64)  # (P, S)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = e
            mask[row, : len(e)] = 1
        return ids, mask

    # ------------------------------------------------------------ stages
    def _split_special(self, text: str) -> list[tuple[str, bool]]:
        """`text` cut at the special tokens written literally in it (leftmost, longest first)."""
        out, start, i = [], 0, 0
        while i < len(text):
            hit = next((t for t in self._special if text.startswith(t, i)), None) if text[i] == "[" else None
            if hit is None:
                i += 1
                continue
            if i > start:
                out.append((text[start:i], False))
            out.append((hit, True))
            i = start = i + len(hit)
        if start < len(text):
            out.append((text[start:], False))
        return out

    def _encode_piece(self, text: str) -> list[int]:
        return [i for word in pre_tokenize(self.normalize(text)) for i in self._wordpiece(word)]

    def normalize(self, text: str) -> str:
        """BertNormalizer: clean text, CJK spacing, strip accents, lowercase (in tokenizers' order)."""
        s = self.settings
        if s.clean_text:
            text = "".join(" " if c in _WHITESPACE else c for c in text if not _is_control(c))
        if s.handle_chinese_chars:
            text = "".join(f" {c} " if _is_cjk(c) else c for c in text)
        if s.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if not _in(NONSPACING_MARK, c))
        if s.lowercase:
            text = "".join(c.lower() for c in text)  # per character, as Rust's char::to_lowercase
        return text

    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece ids of one pre-token ([UNK] when it cannot be matched)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        s, vocab = self.settings, self.vocab
        unk = [vocab[s.unk_token]]
        if len(word) > s.max_input_chars_per_word:
            return unk
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end] if start == 0 else s.continuing_subword_prefix + word[start:end]
                found = vocab.get(sub)
                if found is not None:
                    break
                end -= 1
            if found is None:
                ids = unk
                break
            ids.append(found)
            start = end
        if len(self._cache) < 65536:
            self._cache[word] = ids
        return ids


def pre_tokenize(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace (removed) and punctuation (each character its own word)."""
    words, cur = [], []
    for c in text:
        if c in _WHITESPACE:
            if cur:
                words.append("".join(cur))
                cur = []
        elif _is_punctuation(c):
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(c)
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    return words


def _is_control(c: str) -> bool:
    """Dropped by clean_text: NUL, U+FFFD and tokenizers' control/format/private-use characters (not tab/LF/CR)."""
    return _in(CONTROL, c)


def _is_punctuation(c: str) -> bool:
    """tokenizers' is_bert_punc: ASCII punctuation (!-/ :-@ [-` {-~) or a Unicode P* category character."""
    return _in(PUNCTUATION, c)


def _in(table: tuple[int, ...], c: str) -> bool:
    return bisect_right(table, ord(c)) % 2 == 1


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return any(lo <= o <= hi for lo, hi in _CJK_RANGES)
