"""Shift-GCN: shift maps against explicit loops, shapes, gradients, timing and ONNX export."""

from __future__ import annotations

import math
import time

import pytest
import torch

from tdsm_edge.config import EncoderConfig, encoder_preset
from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.shift_gcn import ShiftGCN, ShiftGraphConv, TemporalShift, build_shift_gcn, spatial_shift_index


def test_spatial_shift_index_equals_loop():
    V, C = 5, 7
    x = torch.randn(2, V * C)
    for direction in (+1, -1):
        out = x[:, spatial_shift_index(V, C, direction)]
        ref = torch.empty_like(x)
        for v in range(V):
            for c in range(C):
                ref[:, v * C + c] = x[:, ((v + direction * c) % V) * C + c]
        assert torch.equal(out, ref)
    # shift-out undoes shift-in
    both = x[:, spatial_shift_index(V, C, +1)][:, spatial_shift_index(V, C, -1)]
    assert torch.equal(both, x)


def test_shift_graph_conv_equals_loop():
    torch.manual_seed(0)
    N, Cin, Cout, T, V = 2, 3, 4, 3, 5
    m = ShiftGraphConv(Cin, Cout, num_joints=V).eval()
    with torch.no_grad():
        m.feature_mask.normal_()
        m.bias.normal_()
    x = torch.randn(N, Cin, T, V)
    with torch.no_grad():
        out = m(x)
    mask = torch.tanh(m.feature_mask) + 1
    bn_scale = 1 / math.sqrt(1 + m.bn.eps)  # eval BN with fresh statistics
    ref = torch.empty(N, Cout, T, V)
    with torch.no_grad():
        down = m.down(x)
        for n in range(N):
            for t in range(T):
                h = torch.empty(V, Cin)  # shift-in: channel c of joint v reads joint v+c
                for v in range(V):
                    for c in range(Cin):
                        h[v, c] = x[n, c, t, (v + c) % V] * mask[v, c]
                y = h @ m.weight + m.bias  # (V, Cout)
                for v in range(V):  # shift-out: channel c of joint v reads joint v-c
                    for c in range(Cout):
                        ref[n, c, t, v] = y[(v - c) % V, c] * bn_scale
        ref = torch.relu(ref + down)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_temporal_shift_equals_loop(stride):
    N, C, T, V = 2, 4, 7, 3
    m = TemporalShift(C, stride=stride)
    with torch.no_grad():
        m.pos.copy_(torch.tensor([0.3, -1.7, 2.5, -0.0]))
    x = torch.randn(N, C, T, V)
    with torch.no_grad():
        out = m(x)
    T_out = math.ceil(T / stride)
    assert out.shape == (N, C, T_out, V)

    def at(n, c, f, v):
        return float(x[n, c, f, v]) if 0 <= f < T else 0.0

    for n in range(N):
        for c in range(C):
            y = float(m.pos[c].detach()) + (stride - 1) / 2
            f0 = math.floor(y)
            w = y - f0
            for h in range(T_out):
                for v in range(V):
                    ref = (1 - w) * at(n, c, h * stride + f0, v) + w * at(n, c, h * stride + f0 + 1, v)
                    assert float(out[n, c, h, v]) == pytest.approx(ref, abs=1e-5)


def test_temporal_shift_gradient_matches_finite_difference_and_constraint():
    torch.manual_seed(1)
    m = TemporalShift(3, stride=2, grad_constraint=False).double()
    x = torch.randn(2, 3, 8, 2, dtype=torch.double)
    w = torch.randn(2, 3, 4, 2, dtype=torch.double)
    (m(x) * w).sum().backward()
    eps = 1e-6
    for c in range(3):
        with torch.no_grad():
            m.pos[c] += eps
            up = float((m(x) * w).sum())
            m.pos[c] -= 2 * eps
            down = float((m(x) * w).sum())
            m.pos[c] += eps
        assert float(m.pos.grad[c]) == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8)

    m.grad_constraint = True  # the original CUDA backward: 0.01·sign(g)
    m.pos.grad = None
    (m(x) * w).sum().backward()
    assert set(m.pos.grad.abs().tolist()) <= {0.01, 1e-4}


def test_gradients_reach_temporal_shifts_in_the_model():
    torch.manual_seed(0)
    model = build_shift_gcn("small", num_classes=5)
    model(torch.randn(2, 3, 16, 25, 2)).logsumexp(-1).sum().backward()
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    assert len(shifts) == 2 * len(model.units)  # two adaptive shifts per TCN-GCN unit
    assert all(s.pos.grad is not None and s.pos.grad.abs().sum() > 0 for s in shifts)


@pytest.mark.parametrize("preset,T", [("small", 32), ("paper", 32)])
def test_shapes_for_presets(preset, T):
    torch.manual_seed(0)
    model = build_shift_gcn(preset, num_classes=7).eval()
    x = torch.randn(1, 3, T, 25, 2)
    with torch.no_grad():
        assert model(x).shape == (1, 7)
        assert model.features(x).shape == (1, {"small": 64, "paper": 256}[preset])  # the last unit's width
    n = sum(p.numel() for p in model.parameters())
    print(f"\nShift-GCN {preset}: {n:,} parameters")


def test_projection_when_width_differs_and_errors():
    cfg = EncoderConfig(channels=(8, 16), strides=(1, 2), feature_dim=12)
    model = ShiftGCN(cfg, num_classes=3).eval()
    with torch.no_grad():
        assert model.features(torch.randn(1, 3, 9, 25, 2)).shape == (1, 12)  # odd T with stride 2
    with pytest.raises(InputError, match="expects"):
        model(torch.randn(1, 3, 9, 20, 2))
    with pytest.raises(ConfigError):
        ShiftGCN(EncoderConfig(channels=(8,), strides=(1, 2)), num_classes=3)


def test_presets_give_full_rank_features_and_a_wider_projection_cannot():
    """The presets' features span all their dimensions; a Linear to a wider feature_dim leaves them in a
    subspace of the last unit's width (measured with metrics.feature_rank on 300 random windows)."""
    from tdsm_edge.training.metrics import feature_rank

    torch.manual_seed(0)
    x = torch.randn(300, 3, 16, 25, 2)
    ranks = {}
    for feature_dim in (64, 256):
        model = ShiftGCN(EncoderConfig(**{**vars(encoder_preset("small")), "feature_dim": feature_dim}), 5).eval()
        with torch.no_grad():
            ranks[feature_dim] = r = feature_rank(model.features(x).numpy())
        assert r["dim"] == feature_dim and r["effective"] > 20, r  # not a few directions, even untrained
    assert ranks[64]["rank"] >= 60  # (untrained: a direction or two may sit below 1e-3 of the largest)
    assert ranks[256]["rank"] <= 64  # 192 of the 256 directions hold nothing


def test_small_preset_forward_backward_time():
    """Prints the time of one forward+backward on (8, 3, 64, 25, 2); benchmarks/ holds the timed claims."""
    torch.manual_seed(0)
    model = ShiftGCN(encoder_preset("small"), num_classes=55)
    x = torch.randn(8, 3, 64, 25, 2)
    model(x[:2]).sum().backward()  # warm-up
    model.zero_grad()
    t0 = time.perf_counter()
    model(x).logsumexp(-1).sum().backward()
    dt = time.perf_counter() - t0
    print(f"\nShift-GCN small forward+backward (8,3,64,25,2): {dt:.2f} s on {torch.get_num_threads()} threads")
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_onnx_export_small_preset(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_shift_gcn("small", num_classes=6).eval()
    x = torch.randn(2, 3, 32, 25, 2)
    path = tmp_path / "shift_gcn.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, 3, 32, 25, 2)
    (got,) = sess.run(None, {"x": x3.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x3), rtol=1e-4, atol=1e-4)
