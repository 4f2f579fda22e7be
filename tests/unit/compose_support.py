"""Helpers for the compose and Dockerfile tests: the schema, interpolation, Dockerfile parsing.

No Docker engine runs on the build machine, so the compose file is checked the way
`docker compose config` would: YAML parse, variable interpolation from the
environment file, then the official Compose Specification JSON schema.

The schema is compose-spec/compose-spec's `schema/compose-spec.json` (Apache-2.0,
https://github.com/compose-spec/compose-spec), as vendored by the PyPI package
check-jsonschema (pinned in requirements/main.txt) in
`check_jsonschema/builtin_schemas/vendor/compose-spec.json` with its licence in
`.../vendor/licenses/LICENSE.compose-spec`. Reading it from the installed package
keeps one copy and one pin.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start with `message`."""


def compose_schema() -> dict[str, Any]:
    source = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(source.read_text(encoding="utf-8"))


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: '{line}' is not KEY=VALUE"
            env[key.strip()] = value.strip()
    return env


def interpolate_text(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation rules for one string ($$, ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e})."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op in (":-", ":?") and value == "":
            value = None
        if value is not None:
            return value
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VAR.sub(replace, text)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def referenced_variables(text: str) -> dict[str, str | None]:
    """Every variable a text references, with its operator (None for a bare reference)."""
    found: dict[str, str | None] = {}
    for match in _VAR.finditer(text):
        name = match.group("braced") or match.group("bare")
        if name:
            found[name] = match.group("op")
    return found


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile, with backslash continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    return out


def copy_sources(instruction: Instruction) -> list[str]:
    """Sources of a COPY/ADD from the build context ([] for COPY --from=<stage>)."""
    args = instruction.arguments
    if args.startswith("["):
        parts = json.loads(args)
    else:
        parts = shlex.split(args)
    flags = [p for p in parts if p.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return []
    paths = [p for p in parts if not p.startswith("--")]
    return paths[:-1]
