"""Training settings default to the paper's and refuse what would silently be ignored."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainer.config import PROFILES, ConfigError, ModelProfile, TrainConfig, get_profile, load_train_config


def test_defaults_are_the_papers_settings() -> None:
    c = TrainConfig()
    assert (c.w_a, c.w_b, c.w1, c.w2, c.w3, c.w4) == (2.0, 1.0, 1.0, 50.0, 1.0, 3.0)
    assert c.perturb_probability == 0.75
    assert c.max_rotation == pytest.approx(math.pi / 8)
    assert c.learning_rate == 1.5e-4
    assert c.restart_m_mul == pytest.approx(1 / 3)
    assert c.batch_size == 32
    assert c.epochs == 10
    # "restart every 2533680 steps" of paper 7.3 is one pass over its training set.
    assert c.restart_steps == math.ceil(2_533_680 / 32)


def test_paper_profile_ends_at_16x16x1024_with_a_64_latent() -> None:
    p = PROFILES["paper"]
    assert p.patch_size == 256 and len(p.stage_widths) == 4
    assert p.encoder_output_size == 16 and p.stage_widths[-1] == 1024
    assert p.latent_dim == 64 == PROFILES["cpu"].latent_dim


def test_yaml_then_cli_overrides_apply_in_order(tmp_path: Path) -> None:
    f = tmp_path / "train.yaml"
    f.write_text("epochs: 3\nlearning_rate: 1.0e-3\nperlin_resolutions: [2, 4]\n")
    c = load_train_config(f, ["epochs=5", "w2=10"])
    assert c.epochs == 5 and c.learning_rate == 1e-3 and c.w2 == 10.0
    assert c.perlin_resolutions == (2, 4)
    assert c.w4 == 3.0  # untouched defaults stay the paper's


def test_unknown_setting_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="learnig_rate"):
        load_train_config(None, ["learnig_rate=1"])


@pytest.mark.parametrize("override", ["perturb_probability=1.5", "max_rotation=2.0", "batch_size=0", "precision=fp8", "epochs=abc"])
def test_out_of_range_settings_are_refused(override: str) -> None:
    with pytest.raises(ConfigError):
        load_train_config(None, [override])


def test_profile_with_patch_not_divisible_by_stages_is_refused() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        ModelProfile("bad", 100, (4, 4, 4), 4, 1, 64, (4,))
    with pytest.raises(ConfigError, match="unknown model profile"):
        get_profile("huge")
