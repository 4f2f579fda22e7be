"""Every setting of the HMI with its default, in one place.

Precedence: command line > environment (docker compose) > the defaults below.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vialguard.service_config import settings_from_args, settings_from_env


@dataclass(frozen=True)
class HmiConfig:
    host: str = "127.0.0.1"                     # loopback unless configured (DESIGN invariant 9)
    port: int = 8080
    preprocessor: str = "localhost:50051"       # gRPC WatchVerdicts + GetHeatmaps
    model_repository: Path = Path("model_repository")
    audit_db: Path = Path("var/audit/verdicts.sqlite3")   # opened read-only
    # The chain's key and head checkpoint, to verify the chain here. Empty: beside the database; a
    # key that is not readable (compose does not mount it: it could forge records) means the page
    # says the chain cannot be checked here and where to check it.
    audit_key_file: Path = Path("")
    audit_anchor: Path = Path("")
    recipe: str = "bfs5-10ml"
    labels: Path = Path("")                     # validation kit labels (JSON lines); empty: none
    history_s: int = 900                        # at start, replay this much of the verdicts stream
    keep_verdicts: int = 2000                   # verdicts held in memory for the pages
    window_s: int = 300                         # reject rate and throughput over the last this many seconds
    reconnect_max_s: float = 5.0                # WatchVerdicts reconnection backoff ceiling
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for name in ("port", "history_s", "keep_verdicts", "window_s"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"hmi setting {name} must be > 0, got {getattr(self, name)!r}")
        if self.reconnect_max_s <= 0:
            raise ValueError("hmi setting reconnect_max_s must be > 0")


ENV_VARS: dict[str, str] = {
    "HMI_HOST": "host",
    "HMI_PORT": "port",
    "VIALGUARD_PREPROCESSOR": "preprocessor",
    "VIALGUARD_MODEL_REPOSITORY": "model_repository",
    "VIALGUARD_AUDIT_DB": "audit_db",
    "VIALGUARD_AUDIT_KEY_FILE": "audit_key_file",
    "VIALGUARD_AUDIT_ANCHOR": "audit_anchor",
    "VIALGUARD_RECIPE": "recipe",
    "HMI_LABELS": "labels",
    "HMI_HISTORY_S": "history_s",
    "HMI_KEEP_VERDICTS": "keep_verdicts",
    "HMI_WINDOW_S": "window_s",
    "HMI_RECONNECT_MAX_S": "reconnect_max_s",
    "HMI_LOG_LEVEL": "log_level",
}


def from_env(environ: Mapping[str, str] | None = None, base: HmiConfig | None = None) -> HmiConfig:
    """Defaults overridden by whichever of ENV_VARS are set (and not empty)."""
    return settings_from_env(HmiConfig, ENV_VARS, "hmi", environ, base)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> HmiConfig:
    """Command line over environment over defaults."""
    return settings_from_args(HmiConfig, ENV_VARS, "hmi", "python -m hmi",
                              "vialguard HMI: the operator's read-only screen", argv, environ)
