"""Dockerfiles and image requirements: what they copy exists, they run as non-root,
declare a health check, pin their bases, and service images carry no TensorFlow."""
from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from tests.unit.compose_support import REPO, copy_sources, dockerfile_instructions, load_compose

DOCKERFILES = sorted(
    REPO / s["build"]["dockerfile"] for s in load_compose()["services"].values() if "build" in s
)
SERVICE_REQUIREMENTS = ["preprocessor", "aggregator", "hmi"]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: '{line}' is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_service_that_builds_has_its_dockerfile() -> None:
    names = {p.parent.name for p in DOCKERFILES}
    assert names == {"preprocessor", "aggregator", "hmi", "trainer"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_path_a_dockerfile_copies_exists_and_is_not_dockerignored(dockerfile: Path) -> None:
    ignored = _dockerignore()
    sources = [s for i in dockerfile_instructions(dockerfile) if i.keyword in ("COPY", "ADD")
               for s in copy_sources(i)]
    assert sources, f"{dockerfile} copies nothing"
    for source in sources:
        matches = list(REPO.glob(source.rstrip("/")))
        assert matches, f"{dockerfile.relative_to(REPO)} copies '{source}', which does not exist"
        top = source.rstrip("/").split("/")[0]
        assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), (
            f"'{source}' is excluded from the build context by .dockerignore"
        )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_pin_their_base_run_as_non_root_and_check_health(dockerfile: Path) -> None:
    instructions = dockerfile_instructions(dockerfile)
    bases = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    for base in bases:
        assert ":" in base and not base.endswith(":latest"), f"{dockerfile}: base {base} not pinned"
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{dockerfile}: runs as root"
    assert any(i.keyword == "HEALTHCHECK" for i in instructions), f"{dockerfile}: no HEALTHCHECK"
    entry = [i.arguments for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("["), "exec-form ENTRYPOINT, so SIGTERM reaches Python"


@pytest.mark.parametrize("name", [*SERVICE_REQUIREMENTS, "trainer"])
def test_image_requirements_use_the_pins_of_main_txt(name: str) -> None:
    main = _pins(REPO / "requirements" / "main.txt")
    subset = _pins(REPO / "requirements" / f"{name}.txt")
    assert subset
    for package, version in subset.items():
        assert package in main, f"{name}.txt installs {package}, absent from main.txt"
        assert version == main[package], f"{name}.txt pins {package}=={version}, main.txt {main[package]}"


@pytest.mark.parametrize("name", SERVICE_REQUIREMENTS)
def test_service_images_carry_no_tensorflow(name: str) -> None:
    subset = _pins(REPO / "requirements" / f"{name}.txt")
    assert not [p for p in subset if p.startswith(("tensorflow", "keras", "tf2onnx"))]


def test_dockerignore_keeps_environments_data_and_secrets_out_of_images() -> None:
    ignored = _dockerignore()
    for must in (".git", ".venv", ".env", "data", "model_repository"):
        assert must in ignored


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _closure(entry: str) -> tuple[set[Path], set[str]]:
    """Repository files reachable by imports from package `entry`, and the third-party modules they need."""
    files: set[Path] = set()
    third_party: set[str] = set()
    todo = [p for p in (REPO / entry).rglob("*.py")]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        for name in _imports_of(path):
            local = _module_file(name)
            if local is not None:
                todo.append(local)
                parent = name.rsplit(".", 1)[0]
                while parent and _module_file(parent) is not None and parent != name:  # package __init__s
                    todo.append(_module_file(parent))
                    parent = parent.rsplit(".", 1)[0] if "." in parent else ""
            elif (REPO / name.split(".")[0]).is_dir() or (REPO / f"{name.split('.')[0]}.py").is_file():
                continue  # `from pkg import name` of a name defined inside pkg
            else:
                third_party.add(name.split(".")[0])
    return files, third_party


@pytest.mark.parametrize("service", SERVICE_REQUIREMENTS)
def test_service_images_hold_every_module_the_service_imports(service: str) -> None:
    """What `python -m <service>` imports is copied into its image or installed by its requirements."""
    files, third_party = _closure(service)
    dockerfile = REPO / service / "Dockerfile"
    copied = [REPO / s.rstrip("/") for i in dockerfile_instructions(dockerfile) if i.keyword == "COPY"
              for s in copy_sources(i)]
    for path in files:
        assert any(path == c or c in path.parents for c in copied), (
            f"{service} imports {path.relative_to(REPO)}, which {dockerfile.relative_to(REPO)} does not copy"
        )
    installed = set(_pins(REPO / "requirements" / f"{service}.txt"))
    providers = importlib.metadata.packages_distributions()
    for module in sorted(third_party - set(sys.stdlib_module_names) - {"__future__"}):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        assert dists & installed, f"{service} imports '{module}' ({dists or 'unknown'}) not in {service}.txt"
