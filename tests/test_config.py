import pytest

from tdsm_edge.config import (
    RunConfig,
    config_from_dict,
    denoiser_preset,
    encoder_preset,
    load_config,
    save_config,
    to_dict,
)
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


@pytest.mark.parametrize(
    "data, match",
    [
        ({"denoiser": {"hidden_size": 130, "num_heads": 4}}, "divisible"),
        ({"eval": {"timestep": 50}}, "timestep"),
        ({"schedule": {"prediction": "x0"}}, "prediction"),
        ({"train": {"lr": 1, "bogus": 2}}, "unknown key"),
        ({"denoiser": {"preset": "giant"}}, "unknown preset"),
        ({"text": {"num_tokens": 8}}, "num_tokens"),
        ({"data": 3}, "expected a mapping"),
    ],
)
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
    for bad, match in [
        ("train.iters=3", "no key 'iters'"),
        ("nope.x=1", "unknown section"),
        ("train=3", "section.key=value"),
        ("denoiser.preset=paper", "preset"),
        ("train.amp=fp8", "train.amp"),
    ]:
        with pytest.raises(ConfigError, match=match):
            apply_overrides(cfg, [bad])


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.iterations=many", r"train\.iterations: expected an int, got str 'many'"),
        ('denoiser.hidden_size="128"', r"denoiser\.hidden_size: expected an int, got str '128'"),
        ("eval.sweep_timesteps=5", r"eval\.sweep_timesteps: expected a list of ints, e\.g\. \[1, 2\], got int 5"),
        ("eval.sweep_noises=[1, x]", r"eval\.sweep_noises\[1\]: expected an int, got str 'x'"),
        ("train.lr=fast", r"train\.lr: expected a finite number, got str 'fast'"),
        ("train.lr=.nan", r"train\.lr: expected a finite number, got float nan"),
        ("train.lr=0", r"train\.lr must lie in \(0, 1000\], got 0"),
        ("denoiser.mask_text_padding=1", r"mask_text_padding: expected a bool, got int 1"),
        ("text.encoder=5", r"text\.encoder: expected a str, got int 5"),
        ("data.skeletons=[a]", r"data\.skeletons: expected a str, got list"),
        ("encoder.epochs=0", r"encoder\.epochs must lie in \[1, 1e\+09\], got 0"),
        ("train.batch_size=1", r"train\.batch_size must lie in \[2, "),
        ("encoder.dropout=1.5", r"encoder\.dropout must lie in \[0, 1\], got 1\.5"),
        ("encoder.dropout=1", r"encoder\.dropout must be < 1"),
        ("schedule.beta_end=0.0001", r"beta_start < beta_end, got 0\.00085 and 0\.0001"),
        ("denoiser.depth=" + str(2**40), r"denoiser\.depth must lie in \[1, 1024\]"),
        ("train.iterations=" + "9" * 400, r"an int of 400 digits is too large"),
        ("eval.num_noises=100000000", r"eval\.num_noises must lie in \[1, 4096\]"),
        ("train.iterations=true", r"train\.iterations: expected an int, got bool True"),
    ],
)
def test_config_values_are_type_and_range_checked(override, match):
    """Every value is checked when the config is read, naming the key, the value and the expected type:
    nothing fails later in the middle of training."""
    from tdsm_edge.config import apply_overrides

    with pytest.raises(ConfigError, match=match):
        apply_overrides(RunConfig(), [override])


def test_ints_are_accepted_for_floats_and_become_floats():
    from tdsm_edge.config import apply_overrides

    cfg = apply_overrides(RunConfig(), ["train.lr=1", "loss.margin=2"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and isinstance(cfg.loss.margin, float)


@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs", ".hidden", "", "x" * 200, "x\n"])
def test_run_names_cannot_leave_the_runs_folder(name):
    with pytest.raises(ConfigError, match="must be a plain folder name"):
        config_from_dict({"name": name})


def test_a_non_utf8_config_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(bad)


def test_noise_bank_seed_follows_the_run_seed_unless_pinned():
    from tdsm_edge.config import EvalConfig, apply_overrides, noise_seed

    assert EvalConfig().noise_seed is None  # published: the bank is drawn from the run seed
    assert noise_seed(EvalConfig(), 3) == 3 and noise_seed(EvalConfig(noise_seed=0), 3) == 0
    cfg = apply_overrides(RunConfig(), ["eval.noise_seed=5"])
    assert noise_seed(cfg.eval, cfg.train.seed) == 5
    assert apply_overrides(RunConfig(), ["eval.noise_seed=null"]).eval.noise_seed is None
    assert RunConfig().train.grad_clip == 0.0 and RunConfig().text.global_norm == "none"
