"""Run-scale presets reach the training settings, and an explicit --set still wins."""
from __future__ import annotations

from pathlib import Path

from trainer.cli import build_parser
from trainer.cli_commands import _train_config
from trainer.run_scale import get_scale


def test_cpu_scale_trains_faster_than_the_paper_rate(tmp_path: Path) -> None:
    args = build_parser().parse_args(["all", "--out", str(tmp_path)])
    config = _train_config(args, get_scale("cpu"))
    assert config.learning_rate == get_scale("cpu").learning_rate == 1e-3
    assert config.steps_per_epoch == get_scale("cpu").steps_per_epoch and config.batch_size == 16
    assert config.max_rotation == 0.03 and config.w_a == 200.0  # the scale's own settings reach the config


def test_paper_scale_keeps_the_paper_learning_rate(tmp_path: Path) -> None:
    args = build_parser().parse_args(["all", "--out", str(tmp_path), "--scale", "paper"])
    assert _train_config(args, get_scale("paper")).learning_rate == 1.5e-4


def test_explicit_setting_overrides_the_preset(tmp_path: Path) -> None:
    args = build_parser().parse_args(["all", "--out", str(tmp_path), "--set", "learning_rate=0.0005"])
    assert _train_config(args, get_scale("cpu")).learning_rate == 0.0005
