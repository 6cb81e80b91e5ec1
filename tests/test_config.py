import pytest

from tdsm_edge.config import (RunConfig, config_from_dict, denoiser_preset, encoder_preset, load_config,
                              save_config, to_dict)
from tdsm_edge.errors import ConfigError


def test_roundtrip_yaml(tmp_path):
    cfg = config_from_dict({"name": "x", "denoiser": {"preset": "small"}, "eval": {"sweep_noises": [1, 3]}})
    assert cfg.denoiser.hidden_size == 256 and cfg.denoiser.depth == 4
    assert cfg.eval.sweep_noises == (1, 3)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_presets():
    assert denoiser_preset("paper").hidden_size == 768
    assert denoiser_preset("paper").depth == 12
    assert len(encoder_preset("paper").channels) == 10
    with pytest.raises(ConfigError, match="unknown denoiser preset"):
        denoiser_preset("huge")


@pytest.mark.parametrize("data, match", [
    ({"denoiser": {"hidden_size": 130, "num_heads": 4}}, "divisible"),
    ({"eval": {"timestep": 50}}, "timestep"),
    ({"schedule": {"prediction": "x0"}}, "prediction"),
    ({"train": {"lr": 1, "bogus": 2}}, "unknown key"),
    ({"denoiser": {"preset": "giant"}}, "unknown preset"),
    ({"text": {"num_tokens": 8}}, "num_tokens"),
    ({"data": 3}, "expected a mapping"),
])
def test_bad_configs(data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid yaml"):
        load_config(bad)


def test_shipped_configs_load():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert files, "no configs shipped"
    for f in files:
        assert isinstance(load_config(f), RunConfig)
    assert to_dict(RunConfig())["denoiser"]["mask_text_padding"] is True


def test_overrides_parse_yaml_values_and_reject_unknown_keys():
    from tdsm_edge.config import apply_overrides

    cfg = apply_overrides(RunConfig(), ["train.iterations=7", "data.features=/d/shift_5_r", "eval.sweep_noises=[1, 3]"])
    assert (cfg.train.iterations, cfg.data.features, cfg.eval.sweep_noises) == (7, "/d/shift_5_r", (1, 3))
    for bad, match in [("train.iters=3", "no key 'iters'"), ("nope.x=1", "unknown section"),
                       ("train=3", "section.key=value"), ("denoiser.preset=paper", "preset"),
                       ("train.amp=fp8", "train.amp")]:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(cfg, [bad])
