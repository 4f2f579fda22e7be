"""Service settings: documented defaults in a dataclass, overridden by the
environment (compose), overridden by the command line — one mechanism for every
service, so the precedence and the error messages are the same everywhere.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from vialguard.redis_url import display_redis_url

C = TypeVar("C")


def _convert(config_cls: type, service: str, name: str, raw: str) -> object:
    kind = {f.name: f.type for f in fields(config_cls)}[name]
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"{service} setting {name}={raw!r} is not a valid {kind}") from exc


def settings_from_env(config_cls: type[C], env_vars: Mapping[str, str], service: str,
                      environ: Mapping[str, str] | None = None, base: C | None = None) -> C:
    """Defaults (or ``base``) overridden by whichever of ``env_vars`` are set and not empty."""
    environ = os.environ if environ is None else environ
    changes = {name: _convert(config_cls, service, name, environ[var])
               for var, name in env_vars.items() if environ.get(var, "") != ""}
    return replace(base if base is not None else config_cls(), **changes)  # type: ignore[type-var]


def _shown(config: Any, name: str) -> str:
    value = getattr(config, name)
    if name.endswith("redis_url"):
        return display_redis_url(str(value))
    return str(value) if value not in ("", None) else "(automatic)"


def settings_from_args(config_cls: type[C], env_vars: Mapping[str, str], service: str, prog: str,
                       description: str, argv: Sequence[str] | None = None,
                       environ: Mapping[str, str] | None = None) -> C:
    """Command line over environment over defaults; ``--help`` shows each effective default."""
    env_config = settings_from_env(config_cls, env_vars, service, environ)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for var, name in env_vars.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                            help=f"default {_shown(env_config, name)} (env {var})")
    args = parser.parse_args(argv)
    changes = {name: _convert(config_cls, service, name, value)
               for name, value in vars(args).items() if value is not None}
    return replace(env_config, **changes)  # type: ignore[type-var]
