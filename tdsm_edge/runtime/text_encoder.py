"""New classes at run time: class text → class-table rows, on ONNX Runtime. numpy + onnxruntime; never torch.

    text = OrtTextEncoder(manifest)                          # the bundle's text graph + tables graph
    rows = text.class_tables(["wave twice"], ["A person waves the right hand twice."])  # name -> (N, ...) float32
    scorer.class_set.add(["wave twice"], rows)               # what ZeroShotRecognizer.add_classes does

It reproduces the training side exactly (`tdsm_edge.text.prompts.encode_classes` with MiniLM, then
`tdsm_edge.models.class_tables.class_tables` in fp32): each prompt set ("label" = the class name,
"description" = its sentence) is tokenized (`tokenizer.py`, pure Python), run through the text graph
(global, local, mask), the sets are concatenated on channels in the manifest's order with the mask
OR-ed, and the tables graph turns (fc, fl, mask) into the rows of every class table. A bundle built
with `--no-text-encoder` has no text side: classes are then fixed at build time.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

from tdsm_edge.errors import ConfigError, InputError, require

from .iospec import TABLES_GRAPH, TEXT_GRAPH, TEXT_INPUTS
from .manifest import Manifest
from .manifest_schema import description_problem, name_problem
from .rebuild import with_options
from .tokenizer import TokenizerSettings, WordPieceTokenizer

log = logging.getLogger(__name__)

PROMPT_INPUTS = {"label": "names", "description": "descriptions"}  # prompt set -> the add_classes argument it reads
BATCH_PROMPTS = 64  # prompts per text-graph call (encode_classes' batch size: bounds the padded length's cost)


def has_text_side(manifest: Manifest) -> bool:
    """Whether the bundle ships the text graph, the tables graph and what the runtime needs to use them."""
    return {TEXT_GRAPH, TABLES_GRAPH} <= set(manifest.graphs) and bool(manifest.data["text"].get("runtime"))


def no_text_side_error(manifest: Manifest) -> ConfigError:
    cmd = with_options(manifest.rebuild_command, text_encoder=True)
    return ConfigError(
        f"the bundle {str(manifest.root)!r} has no text encoder graph, so it cannot turn class text "
        "into class tables; its classes are fixed at build time. Rebuild it with the text encoder (needs a "
        f"MiniLM run): {cmd} ; or build it with the classes you need (--classes ...)"
    )


def check_new_classes(
    names, descriptions, prompt_sets: Sequence[str], existing: Sequence[str], room: int | None = None
) -> tuple[list[str], list[str] | None]:
    """`add_classes` arguments as lists, or InputError saying what is wrong, why, and how to fix it; `room`:
    how many classes may still be added (checked before anything is encoded)."""

    def as_list(value, what: str) -> list:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "…"
            raise InputError(
                f"add_classes takes a list of {what}, got {type(value).__name__} {shown}; "
                f"wrap a single one in a list: [{shown}]"
            )
        if room is not None and len(value) > room:
            raise InputError(
                f"add_classes got {len(value)} {what}, but this recognizer has room for {room} more "
                f"classes (at most {len(existing) + room}); add fewer, or rebuild the bundle with the "
                "classes you need (--classes ...)"
            )
        bad = [v for v in value if not isinstance(v, str) or not v.strip()]
        if bad:
            raise InputError(f"every one of the {what} must be a non-empty string; got {bad[:5]!r}")
        return list(value)

    names = as_list(names, "class names")
    bad = [why for why in map(name_problem, names) if why]
    if bad:
        raise InputError(f"add_classes: {bad[0]}" + (f" (and {len(bad) - 1} more bad names)" if len(bad) > 1 else ""))
    if not names:
        raise InputError(
            "add_classes needs at least one class name, e.g. add_classes(['wave twice'], "
            "['A person waves the right hand twice.'])"
        )
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise InputError(f"add_classes got the class names {repeated} more than once; name each class once")
    existing = set(existing)
    clash = [n for n in names if n in existing]
    if clash:
        raise InputError(
            f"the classes {clash} already exist in this recognizer; pick other "
            "names, or score them with set_active_classes"
        )
    needs_descriptions = "description" in prompt_sets
    if descriptions is None:
        if needs_descriptions:
            raise InputError(
                f"this bundle encodes each class as {list(prompt_sets)}, so every new class needs a "
                "description: one sentence of how the action looks, as the bundle's own classes have "
                "(manifest classes.descriptions), e.g. add_classes(['wave twice'], ['A person waves the "
                "right hand twice.'])"
            )
        return names, None
    descriptions = as_list(descriptions, "descriptions")
    if not needs_descriptions:
        raise InputError(
            f"this bundle encodes classes by {list(prompt_sets)} only, so descriptions are not used; "
            "drop the descriptions argument"
        )
    if len(descriptions) != len(names):
        raise InputError(
            f"add_classes got {len(names)} names but {len(descriptions)} descriptions; give one "
            "description per name, in the same order"
        )
    bad = [why for why in map(description_problem, descriptions) if why]
    if bad:
        raise InputError(f"add_classes: {bad[0]}")
    return names, descriptions


class OrtTextEncoder:
    """The bundle's text side on ONNX Runtime (CPU by default: a few prompts, once per new class).

    Args:
        manifest: a loaded bundle that ships the text side (`has_text_side`), else ConfigError.
        providers: ONNX Runtime execution providers (see `ort_backend.resolve_providers`).
        threads: intra-op threads (default: the cores available).
    Raises:
        ConfigError: the bundle has no text graph (built with --no-text-encoder).
        MissingDependencyError: onnxruntime is not installed.
        BundleError: the text side's record in the manifest is malformed or its graphs break the IO spec.
    """

    def __init__(self, manifest: Manifest, providers: str | Sequence[str] = "cpu", threads: int | None = None) -> None:
        if not has_text_side(manifest):
            raise no_text_side_error(manifest)
        require("onnxruntime", extra="runtime")
        from .ort_backend import check_session, open_session

        self.manifest = manifest
        text = manifest.data["text"]
        info = text["runtime"]
        try:
            self.prompt_sets = tuple(str(s) for s in text["prompt_sets"])
            self.num_tokens, self.dim = int(text["num_tokens"]), int(info["encoder_dim"])
            settings = TokenizerSettings.from_dict(dict(info["tokenizer"]))
            self.tokenizer = WordPieceTokenizer.from_vocab(
                manifest.read_bytes(info["vocab"]), int(info["max_length"]), settings
            )
        except (KeyError, TypeError, ValueError) as e:
            raise manifest.error("the text side (text.runtime)", f"malformed ({type(e).__name__}: {e})") from e
        unknown = [s for s in self.prompt_sets if s not in PROMPT_INPUTS]
        if unknown or self.dim * len(self.prompt_sets) != int(text["dim"]):
            raise manifest.error(
                "the text side",
                f"prompt sets {list(self.prompt_sets)} of {self.dim} channels each "
                f"do not make the {text['dim']} text channels, or name sets this runtime does not "
                f"know (it knows {list(PROMPT_INPUTS)})",
            )
        self.text_session = open_session(manifest, TEXT_GRAPH, threads, providers)
        self.tables_session = open_session(manifest, TABLES_GRAPH, threads, providers)
        check_session(manifest, TEXT_GRAPH, self.text_session)
        check_session(manifest, TABLES_GRAPH, self.tables_session)
        self._tables_inputs = [t.name for t in manifest.io.graphs[TABLES_GRAPH].inputs]
        self.table_names = [t.name for t in manifest.io.graphs[TABLES_GRAPH].outputs]

    def features(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt set's text features, as `MiniLMEncoder.encode` gives them.

        Returns:
            global `(P, Dt) float32`, local `(P, L, Dt) float32` (zero at padding), mask `(P, L) bool`.
        """
        L, Dt = self.num_tokens, self.dim
        parts = []
        for start in range(0, len(prompts), BATCH_PROMPTS):
            ids, mask = self.tokenizer.batch(list(prompts[start : start + BATCH_PROMPTS]), min_length=L)  # (b, S)
            parts.append(self.text_session.run(None, dict(zip(TEXT_INPUTS, (ids, mask)))))
        if not parts:
            return np.zeros((0, Dt), np.float32), np.zeros((0, L, Dt), np.float32), np.zeros((0, L), bool)
        g, loc, m = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return g.astype(np.float32, copy=False), loc.astype(np.float32, copy=False), m.astype(bool, copy=False)

    def class_text(
        self, names: Sequence[str], descriptions: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The class text `encode_classes` builds: every prompt set encoded, concatenated on channels.

        Returns:
            fc `(N, S*Dt) float32`, fl `(N, L, S*Dt) float32`, mask `(N, L) bool` (OR over the sets).
        """
        given = {"names": list(names), "descriptions": None if descriptions is None else list(descriptions)}
        feats = []
        for s in self.prompt_sets:
            prompts = given[PROMPT_INPUTS[s]]
            if prompts is None or len(prompts) != len(names):
                raise InputError(f"the prompt set {s!r} needs one {PROMPT_INPUTS[s][:-1]} per class")
            feats.append(self.features(prompts))
        fc = np.concatenate([f[0] for f in feats], axis=-1)  # (N, S*Dt)
        fl = np.concatenate([f[1] for f in feats], axis=-1)  # (N, L, S*Dt)
        mask = np.logical_or.reduce([f[2] for f in feats])  # (N, L)
        return fc, fl, mask

    def class_tables(self, names: Sequence[str], descriptions: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Class-table rows of N new classes: name → `(N, ...) float32`, the scorer's tables in its input order
        (what tables.npz holds for the bundle's classes; `ClassSet.add` casts them to the scorer's dtypes)."""
        fc, fl, mask = self.class_text(names, descriptions)
        feed = {"fc": fc, "fl": fl, "mask": mask}
        out = self.tables_session.run(None, {n: feed[n] for n in self._tables_inputs})
        return {n: np.asarray(t, np.float32) for n, t in zip(self.table_names, out)}


__all__ = ["OrtTextEncoder", "check_new_classes", "has_text_side", "no_text_side_error"]
