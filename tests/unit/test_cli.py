"""vialguard-train's command line: wiring, help, clear errors, and ingest end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import yaml

from tests.unit.tiny_dataset import TINY_RECIPE, write_tiny_dataset
from trainer.cli import build_parser, main
from trainer.cli_commands import COMMANDS, _train_config, scale_of
from trainer.run_scale import SCALES
from trainer.shard_index import load_index

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("simulate", "ingest", "train", "segment", "calibrate", "evaluate", "export", "all", "elpv", "validate", "import",
               "visibility", "outline", "add-outline")


def test_every_subcommand_has_a_handler_and_a_help_page(capsys):
    assert set(COMMANDS) == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([name, "--help"])
        assert exit_info.value.code == 0
        assert f"vialguard-train {name}" in capsys.readouterr().out


def test_module_help_runs_without_importing_tensorflow():
    code = "import sys, runpy; sys.argv=['x','--help']\ntry: runpy.run_module('trainer.cli', run_name='__main__')\n" \
           "except SystemExit: pass\nprint('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "simulate" in out.stdout and out.stdout.strip().endswith("False")


def test_all_defaults_to_the_cpu_scale_and_the_model_repository():
    args = build_parser().parse_args(["all", "--profile", "cpu", "--out", "model_repository"])
    assert scale_of(args) == SCALES["cpu"]
    assert args.out == Path("model_repository") and args.workdir is None


def test_scale_flags_override_only_what_they_name():
    args = build_parser().parse_args(["all", "--scale", "paper", "--train-products", "10", "--steps", "5"])
    scale = scale_of(args)
    assert (scale.train_products, scale.steps_per_epoch) == (10, 5)
    assert scale.test_defective == SCALES["paper"].test_defective


def test_explicit_training_setting_wins_over_the_preset():
    args = build_parser().parse_args(["all", "--epochs", "2", "--set", "epochs=3", "--set", "learning_rate=0.001"])
    config = _train_config(args, scale_of(args))
    assert config.epochs == 3 and config.learning_rate == 0.001
    assert config.steps_per_epoch == SCALES["cpu"].steps_per_epoch


def test_bad_paths_are_refused_with_the_path_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["ingest", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "directory not found" in capsys.readouterr().err


def test_a_domain_error_becomes_a_one_line_message_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["ingest", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "not a vialguard dataset" in err and "Traceback" not in err


def test_ingest_command_writes_a_training_and_a_kit_patch_set(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "ds", products=3, runs=1, defective=(2,))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    common = ["--dataset", str(data), "--recipe", str(recipe), "--patch-size", "16", "--shard-size", "100"]
    assert main(["ingest", *common, "--out", str(tmp_path / "train")]) == 0
    assert main(["ingest", *common, "--out", str(tmp_path / "kit"), "--frames", "inspected",
                 "--val-fraction", "0"]) == 0
    assert "patches/s" in capsys.readouterr().out
    train, kit = load_index(tmp_path / "train"), load_index(tmp_path / "kit")
    assert train.count(None) == 2 * 18 * 20  # the defective product stays out of training
    assert kit.count(None) == 3 * 60 and kit.frames == "inspected"
    saved = json.loads((tmp_path / "kit" / "index.json").read_text())
    assert saved["patch_size"] == 16 and saved["splits"]["validation"]["patches"] == 0


def test_simulate_then_ingest_end_to_end_with_three_independent_sets(tmp_path, capsys):
    from vialguard.dataset import iter_acquisitions, read_header

    work = tmp_path / "run"
    sizes = ["--train-products", "2", "--train-runs", "1", "--calibration-good", "1", "--calibration-defective",
             "1", "--test-good", "1", "--test-defective", "1", "--kit-runs", "1"]
    assert main(["--log-level", "WARNING", "simulate", "--workdir", str(work), "--seed", "5", *sizes]) == 0
    seeds = {name: read_header(work / "data" / name).seed for name in ("train", "calibration", "test")}
    assert seeds == {"train": 5, "calibration": 6, "test": 7}
    labels = [r.label for r in iter_acquisitions(work / "data" / "test")]
    assert sorted(labels) == ["defective", "good"]
    assert main(["ingest", "--dataset", str(work / "data" / "train"), "--out", str(work / "p" / "train")]) == 0
    assert main(["ingest", "--dataset", str(work / "data" / "test"), "--out", str(work / "p" / "test"),
                 "--frames", "inspected", "--val-fraction", "0"]) == 0
    train, test = load_index(work / "p" / "train"), load_index(work / "p" / "test")
    assert train.count(None) == 2 * 18 * 20 and train.patch_size == 256  # cpu profile: native regions
    assert set(train.splits["train"].products).isdisjoint(train.splits["validation"].products)
    assert test.count(None) == 2 * 60
    assert sum(c["defective"] for c in test.splits["train"].counts.values()) > 0


def test_rerun_in_the_same_workdir_keeps_finished_sets_and_refuses_foreign_ones(tmp_path):
    from trainer.chain import ChainError, RunLayout, simulate_set
    from vialguard.recipe import load_recipe

    out = RunLayout(tmp_path).data("train")
    simulate_set(out, load_recipe(), 1, 0, 1, seed=3)
    written = (out / "manifest.jsonl").stat().st_mtime_ns
    simulate_set(out, load_recipe(), 1, 0, 1, seed=3)
    assert (out / "manifest.jsonl").stat().st_mtime_ns == written
    with pytest.raises(ChainError, match="holds another dataset"):
        simulate_set(out, load_recipe(), 1, 0, 1, seed=4)


@pytest.mark.parametrize("scale, profile", [("cpu", "cpu"), ("paper", "paper"), ("smoke", "tiny")])
def test_all_picks_the_profile_its_scale_is_meant_for_unless_told(scale, profile):
    args = build_parser().parse_args(["all", "--scale", scale])
    assert (args.profile or scale_of(args).profile) == profile
    assert build_parser().parse_args(["all", "--scale", scale, "--profile", "cpu"]).profile == "cpu"
