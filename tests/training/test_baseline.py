"""Tests for the direct-alignment zero-shot baseline (tdsm_edge.training.baseline)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tdsm_edge.config import BaselineConfig  # noqa: E402
from tdsm_edge.errors import CheckpointError, InputError  # noqa: E402
from tdsm_edge.training.baseline import AlignmentBaseline  # noqa: E402

K, DT, DZ = 10, 32, 48
SEEN, UNSEEN = np.arange(7), np.arange(7, 10)
CFG = BaselineConfig(epochs=15, lr=1e-3, temperature=0.07, hidden_dim=64)


@pytest.fixture(scope="module")
def problem():
    """10 classes whose text vectors share a 4-d semantic structure; z = A·text + noise."""
    rng = np.random.default_rng(0)
    text = (rng.normal(size=(K, 4)) @ rng.normal(size=(4, DT))).astype(np.float32)  # (K, Dt)
    A = rng.normal(size=(DZ, DT)).astype(np.float32) / np.sqrt(DT)

    def make(classes: np.ndarray, n: int):
        y = np.repeat(classes, n)
        z = text[y] @ A.T + 0.5 * rng.normal(size=(y.size, DZ))  # (N, Dz)
        return z.astype(np.float32), y.astype(np.int64)

    z_tr, y_tr = make(SEEN, 40)
    z_te, y_te = make(UNSEEN, 40)
    return text, z_tr, y_tr, z_te, y_te


@pytest.fixture(scope="module")
def fitted(problem):
    text, z_tr, y_tr, _, _ = problem
    return AlignmentBaseline(DZ, DT, CFG).fit(z_tr, y_tr, text, SEEN, seed=3, progress=False)


def test_unseen_accuracy_well_above_chance(problem, fitted):
    text, _, _, z_te, y_te = problem
    err = fitted.errors(z_te, text[UNSEEN])
    assert err.shape == (z_te.shape[0], 3) and err.dtype == np.float32
    assert np.all(err >= -1 - 1e-5) and np.all(err <= 1 + 1e-5)  # negative cosine
    acc = (err.argmin(1) == y_te - 7).mean()
    assert acc > 0.6, f"unseen top-1 {acc:.2f} (chance 0.33)"
    assert fitted.history["loss"][-1] < fitted.history["loss"][0]
    assert fitted.seen_classes == SEEN.tolist()


def test_same_seed_same_result_and_global_rng_untouched(problem, fitted):
    text, z_tr, y_tr, z_te, _ = problem
    torch.manual_seed(123)
    before = torch.rand(1)
    again = AlignmentBaseline(DZ, DT, CFG)  # construction draws from the global RNG; fit must not
    torch.manual_seed(123)
    again.fit(z_tr, y_tr, text, SEEN, seed=3, progress=False)
    assert torch.rand(1) == before  # fit does not consume the caller's RNG stream
    np.testing.assert_array_equal(again.errors(z_te, text), fitted.errors(z_te, text))
    other = AlignmentBaseline(DZ, DT, CFG).fit(z_tr, y_tr, text, SEEN, seed=4, progress=False)
    assert not np.array_equal(other.errors(z_te, text), fitted.errors(z_te, text))


def test_save_load_round_trip(tmp_path, problem, fitted):
    text, _, _, z_te, _ = problem
    folder = fitted.save(tmp_path / "baseline")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = AlignmentBaseline.load(folder)
    assert loaded.cfg == CFG and loaded.seen_classes == fitted.seen_classes
    np.testing.assert_array_equal(loaded.errors(z_te, text), fitted.errors(z_te, text))
    with pytest.raises(CheckpointError):
        AlignmentBaseline.load(tmp_path / "missing")


def test_input_validation(problem):
    text, z_tr, y_tr, _, _ = problem
    model = AlignmentBaseline(DZ, DT, CFG)
    with pytest.raises(InputError, match="seen"):
        model.fit(z_tr, np.where(y_tr == 0, 8, y_tr), text, SEEN, progress=False)  # label 8 is unseen
    with pytest.raises(InputError):
        model.fit(z_tr[:, :5], y_tr, text, SEEN, progress=False)
    with pytest.raises(InputError):
        model.errors(z_tr, text[:, :3])
