"""Before the local stack starts anything, missing parts are named with their fix; kits are read lazily."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_inspector import publish_tiny_version
from vialguard.errors import DatasetError
from vialguard.recipe import load_recipe
from vialguard.simulator.kit import make_kit, write_dataset
from vialguard_stack import local_stack
from vialguard_stack.demo import DemoConfig, parse_args
from vialguard_stack.kit_source import HELD_OUT_SEED, directory_shots, simulated_shots
from vialguard_stack.local_stack import REPO_ROOT, StackNotReady, StackSettings, preflight
from vialguard_stack.triton_server import TritonNotInstalled

RECIPE = load_recipe()


class _InstalledTriton:
    @classmethod
    def find(cls, env: Path) -> "_InstalledTriton":
        return cls()


class _MissingTriton:
    @classmethod
    def find(cls, env: Path) -> None:
        raise TritonNotInstalled(f"Triton is not installed in {env}")


def _repository(root: Path) -> Path:
    repo = root / "model_repository"
    (repo / "inspector" / "configs").mkdir(parents=True)
    for name in ("cpu.pbtxt", "gpu.pbtxt"):
        source = REPO_ROOT / "model_repository" / "inspector" / "configs" / name
        (repo / "inspector" / "configs" / name).write_text(source.read_text())
    return repo


@pytest.fixture
def triton_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stack, "TritonInstallation", _InstalledTriton)
    monkeypatch.setattr(local_stack.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_no_trained_model_points_to_make_train_cpu(tmp_path: Path, triton_installed: None) -> None:
    with pytest.raises(StackNotReady, match="make train-cpu"):
        preflight(StackSettings(run_dir=tmp_path, repository=_repository(tmp_path)))


def test_an_incomplete_version_is_refused_before_anything_starts(tmp_path: Path, triton_installed: None) -> None:
    repo = _repository(tmp_path)
    (repo / "inspector" / "1").mkdir()
    (repo / "inspector" / "1" / "model.onnx").write_bytes(b"not really")
    with pytest.raises(StackNotReady, match="incomplete.*calibration.json"):
        preflight(StackSettings(run_dir=tmp_path, repository=repo))


def test_the_newest_complete_version_is_chosen_unless_one_is_named(tmp_path: Path, triton_installed: None) -> None:
    repo = _repository(tmp_path)
    publish_tiny_version(repo, 32, 1.0, 0.2)
    publish_tiny_version(repo, 32, 0.9, 0.3)
    assert preflight(StackSettings(run_dir=tmp_path, repository=repo)).version == 2
    assert preflight(StackSettings(run_dir=tmp_path, repository=repo, version=1)).version == 1
    with pytest.raises(StackNotReady, match=r"version 7 .*published: \[1, 2\]"):
        preflight(StackSettings(run_dir=tmp_path, repository=repo, version=7))


def test_missing_triton_or_redis_says_to_run_make_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stack, "TritonInstallation", _MissingTriton)
    with pytest.raises(StackNotReady, match="make setup"):
        preflight(StackSettings(run_dir=tmp_path, repository=_repository(tmp_path)))
    monkeypatch.setattr(local_stack, "TritonInstallation", _InstalledTriton)
    monkeypatch.setattr(local_stack.shutil, "which", lambda name: None)
    with pytest.raises(StackNotReady, match="redis-server is not installed"):
        preflight(StackSettings(run_dir=tmp_path, repository=_repository(tmp_path / "b")))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kit") / "kit"
    write_dataset(root, make_kit(1, 1, runs=1, seed=5, recipe=RECIPE), RECIPE, 5, {})
    return root


def test_a_kit_folder_is_pushed_as_written_with_its_labels(kit: Path) -> None:
    shots = list(directory_shots(kit, RECIPE))
    rendered = list(simulated_shots(RECIPE, 1, 1, 1, seed=5))
    assert [(s.acquisition_id, s.label) for s in shots] == [(s.acquisition_id, s.label) for s in rendered]
    assert sorted(s.label for s in shots) == ["defective", "good"]
    for disk, live in zip(shots, rendered):
        assert disk.frames.shape == (RECIPE.frames_per_acquisition, RECIPE.frame_height, RECIPE.frame_width)
        np.testing.assert_array_equal(disk.frames, live.frames)


def test_a_kit_of_another_recipe_is_refused(kit: Path, tmp_path: Path) -> None:
    shutil.copytree(kit, tmp_path / "kit")
    header = tmp_path / "kit" / "dataset.json"
    header.write_text(header.read_text().replace('"bfs5-10ml"', '"bfs10-2ml"'))
    with pytest.raises(DatasetError, match="recipe 'bfs10-2ml'"):
        next(directory_shots(tmp_path / "kit", RECIPE))


def test_demo_options_map_to_its_config_and_refuse_an_empty_kit() -> None:
    config = parse_args(["--good", "2", "--defective", "1", "--runs", "4", "--encoding", "raw", "--frames", "all",
                         "--deadline-ms", "800", "--pace-ms", "500"])
    assert (config.good, config.defective, config.runs, config.seed) == (2, 1, 4, HELD_OUT_SEED)
    assert (config.encoding.value, config.frames.value, config.deadline_ms, config.pace_ms) == ("raw", "all", 800, 500)
    with pytest.raises(ValueError, match="at least one product"):
        DemoConfig(good=0, defective=0)


def test_the_demo_starts_the_hmi_unless_told_not_to_and_can_keep_running() -> None:
    default = parse_args([])
    assert default.hmi and not default.keep_running and default.hmi_port == 0
    config = parse_args(["--keep-running", "--no-hmi", "--hmi-port", "8081"])
    assert (config.hmi, config.keep_running, config.hmi_port) == (False, True, 8081)


def test_the_demo_writes_each_products_label_once_before_its_first_shot_is_pushed(tmp_path: Path) -> None:
    from hmi.labels import read_labels
    from vialguard_stack.demo import _labelled

    path = tmp_path / "run" / "kit-labels.jsonl"
    seen = []
    for shot in _labelled(simulated_shots(RECIPE, 1, 1, 2, seed=5), path):
        seen.append(dict(read_labels(path)))
        assert shot.product_id in seen[-1]
    assert read_labels(path) == {"P0000": "good", "P0001": "defective"}
    assert len(path.read_text().splitlines()) == 2
