import pytest
import torch

from tdsm_edge.checkpoint import (
    latest_checkpoint,
    load_into,
    load_module,
    load_train_state,
    prune_checkpoints,
    save_module,
    save_train_state,
)
from tdsm_edge.errors import CheckpointError


def test_module_roundtrip_and_strict_errors(tmp_path):
    m = torch.nn.Linear(3, 2)
    save_module(tmp_path / "ck", m.state_dict(), {"kind": "lin"})
    sd, meta = load_module(tmp_path / "ck")
    m2 = torch.nn.Linear(3, 2)
    load_into(m2, sd, "test")
    assert torch.equal(m2.weight, m.weight) and meta["kind"] == "lin"
    with pytest.raises(CheckpointError, match="shape"):
        load_into(torch.nn.Linear(4, 2), sd, "test")
    with pytest.raises(CheckpointError, match="missing"):
        load_into(torch.nn.Sequential(torch.nn.Linear(3, 2)), sd, "test")
    (tmp_path / "ck" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_module(tmp_path / "ck")
    assert not list(tmp_path.glob("ck/.*tmp")), "temporary files left behind"


def test_corrupt_weights(tmp_path):
    save_module(tmp_path, {"w": torch.zeros(2)}, {})
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_module(tmp_path)


def test_train_state_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    for _ in range(3):
        m(torch.randn(2, 4)).sum().backward()
        opt.step()
        sched.step()
    g = torch.Generator().manual_seed(5)
    save_train_state(tmp_path, opt, sched, 3, g)
    m2 = torch.nn.Linear(4, 4)
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 0.5**s)
    g2 = torch.Generator()
    rec = load_train_state(tmp_path, opt2, sched2, g2)
    assert rec["step"] == 3 and sched2.last_epoch == sched.last_epoch
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(g2.get_state(), g.get_state())


def test_latest_and_prune(tmp_path):
    for s in (10, 20, 30):
        d = tmp_path / f"step_{s:07d}"
        save_module(d, {"w": torch.zeros(1)}, {})
        (d / "train_state.json").write_text("{}")
    (tmp_path / "step_0000040").mkdir()  # incomplete: ignored
    assert latest_checkpoint(tmp_path).name == "step_0000030"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000030", "step_0000040"]
    assert latest_checkpoint(tmp_path / "none") is None


def test_a_corrupt_config_json_is_named_and_the_weights_are_not_blamed(tmp_path):
    save_module(tmp_path, {"w": torch.zeros(2)}, {"kind": "x"})
    for bad in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        (tmp_path / "config.json").write_bytes(bad)
        with pytest.raises(CheckpointError, match="config.json") as e:
            load_module(tmp_path)
        assert (
            "model.safetensors" not in str(e.value)
            and "the weights next to it may be fine" in str(e.value)
            or "not a json object" in str(e.value)
        )
