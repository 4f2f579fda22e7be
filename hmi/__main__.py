"""`python -m hmi`: serve the operator HMI until SIGTERM (uvicorn; Ctrl-C works too)."""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from hmi.app import create_app
from hmi.config import parse_args
from hmi.context import Hmi
from vialguard.errors import RecipeError

log = logging.getLogger("hmi")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as exc:
        print(f"hmi: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        hmi = Hmi.build(config)
    except (RecipeError, ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    log.info("HMI on http://%s:%d/ (preprocessor %s, audit %s, models %s)", config.host, config.port,
             config.preprocessor, config.audit_db, config.model_repository)
    # Pages hold event streams open: give them a short grace, then stop.
    uvicorn.run(create_app(hmi), host=config.host, port=config.port, log_level=config.log_level.lower(),
                access_log=False, timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
