"""The classes a scorer scores: names, their class-table rows, the active subset. numpy only.

    classes = ClassSet(manifest.class_names, load_tables(manifest), dtypes)   # dtypes from the IO spec
    classes.select(["wave", "kick"])          # score a subset (rows of the tables; nothing is rebuilt)
    classes.add(["wave twice"], new_rows)     # append classes whose tables were computed at run time
    snap = classes.snapshot()                 # (names, tables cast to the scorer's dtypes, version)

Every backend (ONNX Runtime, TensorRT, PyTorch) keeps its classes in one of these. A change builds a
new immutable snapshot and swaps it in one assignment, so a call running in another thread keeps the
snapshot it started with and never sees half a change; `version` lets a backend that keeps tables on
a device re-upload them only when they changed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tdsm_edge.errors import InputError

from .manifest_schema import MAX_CLASSES, name_problem


@dataclass(frozen=True)
class Snapshot:
    """The active classes at one moment: what one scoring call reads."""

    names: tuple[str, ...]  # K active class names, in score (column) order
    index: np.ndarray  # (K,) int64 rows of the full class list
    tables: dict[str, np.ndarray]  # name -> (K, ...) contiguous, cast to the scorer's dtypes
    version: int  # bumped on every select / add


class ClassSet:
    """All classes of a scorer (the bundle's plus any added at run time) and the active subset.

    Args:
        names: the K0 class names, in table-row order.
        tables: name -> `(K0, ...)` float32 class tables.
        dtypes: name -> numpy dtype the scorer reads that table in (e.g. float16 for a fp16 graph).
        max_classes: how many classes `add` may grow the set to (the active subset of a TensorRT scorer is
            bounded by its plan's profile besides).
    """

    def __init__(
        self,
        names: Sequence[str],
        tables: Mapping[str, np.ndarray],
        dtypes: Mapping[str, str],
        max_classes: int = MAX_CLASSES,
    ) -> None:
        self._lock = threading.Lock()
        self.max_classes = max(int(max_classes), len(names))
        self._dtypes = {n: np.dtype(dtypes[n]) for n in tables}
        self._names: tuple[str, ...] = tuple(names)
        self._all = {n: np.ascontiguousarray(t, self._dtypes[n]) for n, t in tables.items()}
        self._check_rows(self._all, len(self._names), "the bundle's tables")
        self._snap = self._make(np.arange(len(self._names)), 0)

    @property
    def all_names(self) -> list[str]:
        """Every class, in table-row order."""
        return list(self._names)

    @property
    def names(self) -> list[str]:
        """The active class names, in score order."""
        return list(self._snap.names)

    def snapshot(self) -> Snapshot:
        """The active classes now (immutable; keep it for the whole call)."""
        return self._snap

    def select(self, classes: Sequence[str | int] | None) -> list[str]:
        """Score only `classes` (names or row indices, in the order given); None = every class."""
        with self._lock:
            idx = np.arange(len(self._names)) if classes is None else self._indices(classes)
            self._snap = self._make(idx, self._snap.version + 1)
        return self.names

    def add(self, names: Sequence[str], tables: Mapping[str, np.ndarray]) -> list[str]:
        """Append classes with their table rows (`(N, ...)` per table, float32 or the scorer's dtypes).

        The new classes become active after the currently active ones. Returns the active names.
        """
        names = list(names)
        with self._lock:
            clash = sorted(set(names) & set(self._names))
            if clash or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
                raise InputError(
                    f"add_classes needs new, unique, non-empty class names; {clash or names} "
                    "already exist or repeat. Pick other names, or set_active_classes to reuse a class"
                )
            bad = [why for why in map(name_problem, names) if why]
            if bad:
                raise InputError(f"add_classes: {bad[0]}")
            if len(self._names) + len(names) > self.max_classes:
                raise InputError(
                    f"adding {len(names)} classes would make {len(self._names) + len(names)}, but this "
                    f"scorer holds at most {self.max_classes}; choose the classes you need with "
                    "set_active_classes, or rebuild the bundle with them (--classes ...)"
                )
            if set(tables) != set(self._all):
                raise InputError(f"new class rows must give the tables {sorted(self._all)}, got {sorted(tables)}")
            rows = {n: np.ascontiguousarray(tables[n], self._dtypes[n]) for n in self._all}
            self._check_rows(rows, len(names), "the new classes' tables")
            bad = [n for n, t in rows.items() if t.shape[1:] != self._all[n].shape[1:]]
            if bad:
                raise InputError(
                    f"new class tables {bad} have the wrong row shape: "
                    f"{[(rows[n].shape[1:], self._all[n].shape[1:]) for n in bad]} (got, want)"
                )
            K0 = len(self._names)
            self._all = {n: np.concatenate([self._all[n], rows[n]]) for n in self._all}
            self._names = self._names + tuple(names)
            idx = np.concatenate([self._snap.index, np.arange(K0, K0 + len(names))])
            self._snap = self._make(idx, self._snap.version + 1)
        return self.names

    def _indices(self, classes: Sequence[str | int]) -> np.ndarray:
        if isinstance(classes, (str, int, np.integer)):
            raise InputError(f"a list of class names or indices is needed, e.g. ['{self._names[0]}'], got {classes!r}")
        lookup = {n: i for i, n in enumerate(self._names)}
        idx, unknown = [], []
        for c in classes:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= int(c) < len(self._names):
                idx.append(int(c))
            elif isinstance(c, str) and c in lookup:
                idx.append(lookup[c])
            else:
                unknown.append(c)
        if unknown:
            raise InputError(
                f"unknown classes {unknown}: this bundle holds only {list(self._names)} (with any added "
                "by add_classes). Build a bundle with them (python -m export.build_engine --classes ...) "
                "or add them (add_classes)"
            )
        if not idx:
            raise InputError("at least one class name is needed; pass None to score every class")
        if len(set(idx)) != len(idx):
            raise InputError(f"repeated classes in {list(classes)}; name each class once")
        return np.asarray(idx, np.int64)

    def _make(self, idx: np.ndarray, version: int) -> Snapshot:
        tables = {n: np.ascontiguousarray(t[idx]) for n, t in self._all.items()}
        for t in tables.values():
            t.setflags(write=False)
        return Snapshot(tuple(self._names[i] for i in idx), idx, tables, version)

    @staticmethod
    def _check_rows(tables: Mapping[str, np.ndarray], K: int, what: str) -> None:
        bad = {n: t.shape for n, t in tables.items() if t.ndim < 1 or t.shape[0] != K}
        if bad:
            raise InputError(f"{what} must have one row per class ({K}); got shapes {bad}")
        nonfinite = [n for n, t in tables.items() if not np.isfinite(t).all()]
        if nonfinite:
            raise InputError(f"{what} {nonfinite} hold NaN or infinite values; recompute them")
