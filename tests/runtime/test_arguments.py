"""Arguments of the robot-facing API: a wrong type or range is a one-line typed error, never a hang or
a silent acceptance."""

from __future__ import annotations

import numpy as np
import pytest

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.runtime import NONE_LABEL, ActionStream, ZeroShotRecognizer
from tdsm_edge.runtime.class_set import ClassSet
from tdsm_edge.runtime.ort_backend import num_cores


@pytest.mark.parametrize("bundle_dir", [None, 123, b"engines/demo", "", "   "])
def test_load_needs_a_folder_path(bundle_dir):
    with pytest.raises(InputError, match="bundle"):
        ZeroShotRecognizer.load(bundle_dir)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"threads": -1}, InputError, r"threads must be None .* an int in \[1, "),
        ({"threads": 0}, InputError, "threads must be"),
        ({"threads": 10**6}, InputError, "threads must be"),
        ({"threads": 1.5}, InputError, "threads must be"),
        ({"threads": True}, InputError, "threads must be"),
        ({"backend": 5}, ConfigError, "backend must be one of"),
        ({"backend": "tpu"}, ConfigError, "backend must be one of"),
        ({"device": 0}, InputError, "device must be a string"),
        ({"cuda_graph": "yes"}, InputError, "cuda_graph must be True or False"),
        ({"providers": None}, InputError, "providers must be"),
        ({"providers": "gpu"}, InputError, "providers must be"),
        ({"providers": 123}, InputError, "providers must be"),
        ({"providers": []}, InputError, "providers must be"),
        ({"device": "cpu\n"}, InputError, "device must be a string"),
    ],
)
def test_load_arguments_are_checked_before_anything_is_read(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        ZeroShotRecognizer.load(tmp_path / "does_not_exist", **kwargs)  # the argument error comes first


def test_the_thread_limit_scales_with_the_cores(runtime_bundle):
    assert ZeroShotRecognizer.load(runtime_bundle.dir, threads=4 * num_cores()).classes == runtime_bundle.names


def test_stream_and_open_set_arguments_need_real_numbers_and_bools(runtime_bundle):
    rec = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)
    for kwargs in ({"smoothing": "0.5"}, {"smoothing": True}, {"min_valid": "1"}, {"smoothing": None}):
        with pytest.raises(ConfigError, match="must be a number"):
            ActionStream(rec, **kwargs)
    assert ActionStream(rec, smoothing=np.float32(0.5)).smoothing == 0.5
    for enabled in ("no", 0, None, "False"):
        with pytest.raises(InputError, match=r"set_open_set\(enabled\) takes True or False"):
            rec.set_open_set(enabled)
    assert rec.open_set_threshold is None  # nothing was turned on by a bad call


@pytest.mark.parametrize(
    "name, match",
    [
        (NONE_LABEL, "is the open-set answer"),
        ("None Of These", "is the open-set answer"),
        ("wave\nkick", "control, format"),
        ("evil\u202eeman", "U\\+202E"),
        ("zero\u200bwidth", "U\\+200B"),
        (" padded", "white space"),
        ("x" * 201, "at most 200"),
        ("\u3164", "prints as blank"),
        ("\u0301wave", "starts with a combining mark"),
        ("n\u043ene of these", "mixes CYRILLIC and LATIN"),
        ("w\u0430ve", "mixes CYRILLIC and LATIN"),
    ],
)
def test_added_class_names_are_checked(text_bundle, name, match):
    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    with pytest.raises(InputError, match=match):
        rec.add_classes([name], ["A person waves."])
    assert rec.classes == rec.all_classes and len(rec.classes) == 5  # nothing was added


@pytest.mark.parametrize(
    "description, match",
    [
        ("A person\x00waves.", "control or format"),
        ("x" * 2001, "at most 2000 characters"),
        ("  ", "non-empty"),
    ],
)
def test_added_class_descriptions_are_checked(text_bundle, description, match):
    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    with pytest.raises(InputError, match=match):
        rec.add_classes(["wave twice"], [description])


def test_too_many_new_classes_are_refused_before_any_is_encoded(text_bundle, monkeypatch):
    from tdsm_edge.runtime import text_encoder

    rec = ZeroShotRecognizer.load(text_bundle.dir, threads=1)
    monkeypatch.setattr(text_encoder.OrtTextEncoder, "class_tables", lambda *a: pytest.fail("encoded"))
    names = [f"class {i}" for i in range(2000)]
    with pytest.raises(InputError, match="has room for 1019 more classes"):
        rec.add_classes(names, ["A person moves."] * len(names))


@pytest.mark.parametrize("names", [{"shake head", "turn around"}, {"shake head": 1}, "shake head"])
def test_active_classes_need_an_ordered_list(runtime_bundle, names):
    rec = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)
    with pytest.raises(InputError, match="a list of class names in score order"):
        rec.set_active_classes(names)


def test_a_stream_window_has_a_ceiling(runtime_bundle):
    rec = ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)
    with pytest.raises(ConfigError, match=r"window must be an int in \[1, 100000\]"):
        ActionStream(rec, window=10**8)


def test_a_class_set_has_a_cap():
    tables = {"t": np.zeros((2, 3), np.float32)}
    cs = ClassSet(["a", "b"], tables, {"t": "float32"}, max_classes=4)
    cs.add(["c", "d"], {"t": np.ones((2, 3), np.float32)})
    with pytest.raises(InputError, match="holds at most 4"):
        cs.add(["e"], {"t": np.ones((1, 3), np.float32)})
    assert cs.all_names == ["a", "b", "c", "d"]
