"""Stick-figure rendering writes real image files and rejects bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tdsm_edge.data.render import render_gif, render_strip  # noqa: E402
from tdsm_edge.data.synthact import Nuisance, generate  # noqa: E402
from tdsm_edge.errors import InputError  # noqa: E402
from tdsm_edge.skeleton.preprocess import preprocess  # noqa: E402


@pytest.fixture(scope="module")
def seq() -> np.ndarray:
    X, _ = generate([23], 1, seed=0, frames=16, nuisance=Nuisance(p_second_body=1.0))
    return X[0]  # (2, 16, 25, 3), with missing joints possible


def test_strip_png(tmp_path, seq):
    path = render_strip(seq, tmp_path / "strip.png", n_frames=4, title="kick with left leg")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    side = render_strip(seq[0], tmp_path / "side.png", n_frames=3, view="side")  # single body (T, V, 3)
    assert side.stat().st_size > 1000
    pre = render_strip(preprocess(seq, 16), tmp_path / "pre.png", n_frames=2)  # (3, T, V, M) accepted
    assert pre.stat().st_size > 1000


def test_gif(tmp_path, seq):
    path = render_gif(seq[:, :5], tmp_path / "clip.gif", fps=10)
    assert path.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_bad_input(tmp_path):
    with pytest.raises(InputError, match="V=25"):
        render_strip(np.ones((4, 17, 3)), tmp_path / "x.png")
    with pytest.raises(InputError, match="view"):
        render_strip(np.ones((4, 25, 3)), tmp_path / "x.png", view="top")
