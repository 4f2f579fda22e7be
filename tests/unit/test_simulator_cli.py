"""The simulator's command line writes a dataset the reader accepts, and explains bad arguments."""
from __future__ import annotations

from pathlib import Path

import pytest

from vialguard.dataset import iter_acquisitions, read_header
from vialguard.simulator.cli import main


def test_train_set_command_writes_a_readable_good_only_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "train"
    assert main(["train-set", "--out", str(out), "--products", "1", "--runs", "1", "--seed", "5"]) == 0
    header = read_header(out)
    assert header.generator["kind"] == "train-set" and header.seed == 5
    assert [r.label for r in iter_acquisitions(out)] == ["good"]
    assert "wrote 1 acquisitions" in capsys.readouterr().out


def test_kit_command_refuses_an_existing_dataset_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "kit"
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    assert main(["kit", "--out", str(out), "--good", "1", "--defective", "0", "--runs", "1"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def test_kit_command_refuses_an_impossible_severity_range(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["kit", "--out", str(tmp_path / "k"), "--good", "0", "--defective", "1", "--severity-min", "0.9",
            "--severity-max", "0.2"]
    assert main(argv) == 2
    assert "severity range" in capsys.readouterr().err
