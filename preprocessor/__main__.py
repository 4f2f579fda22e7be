"""`python -m preprocessor`: run the preprocessor until SIGTERM.

The first SIGTERM (or Ctrl-C) stops taking calls and lets those in flight
finish within the grace period; a second one stops at once.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from preprocessor import exchange
from preprocessor.config import PreprocessorConfig, parse_args
from preprocessor.health import triton_probe
from preprocessor.server import start_server
from preprocessor.service import HEATMAP_DRAIN_S
from vialguard.errors import RecipeError
from vialguard.inference import Inspector
from vialguard.metrics import serve_metrics
from vialguard.recipe import Recipe, load_recipe

log = logging.getLogger("preprocessor")


def make_inspector(config: PreprocessorConfig, recipe: Recipe) -> Inspector:
    """The Triton client, imported here so tests and tools never need tritonclient.

    With shared memory on: one region per inference slot, each the size of one
    acquisition's float32 patches (the largest a version takes).
    """
    from preprocessor.inspector_client import TritonInspector

    shared = None
    if config.triton_shared_memory:
        from preprocessor.shared_inputs import SharedInputs, shm_headers

        key = open(config.triton_shm_key_file).read().strip() if config.triton_shm_key_file else ""
        region_bytes = recipe.patches_per_acquisition * recipe.patch_size ** 2 * 4
        shared = SharedInputs(config.max_inflight, region_bytes, shm_headers(key))
    return TritonInspector(config.triton_url, config.model_name, shared=shared)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ValueError as exc:
        print(f"preprocessor: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(config.recipe)
        inspector = make_inspector(config, recipe)
        # Triton's own readiness, unless the client can say it (a cached patch size cannot).
        probe = None if callable(getattr(inspector, "is_ready", None)) else triton_probe(config.triton_url,
                                                                                        config.model_name)
        running = start_server(config, recipe, inspector, exchange.connect(config.redis_url), inference_probe=probe)
        serve_metrics(running.metrics.registry, config.metrics_host, config.metrics_port, "preprocessor")
    except (RecipeError, ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    signals_seen = 0
    finished: list[threading.Event] = []  # set once the calls and the heatmap fetches behind them are done

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("%s: finishing calls in flight (up to %.1f s), send again to stop at once",
                     signal.Signals(signum).name, config.grace_s)
            finished.append(running.stop(config.grace_s))
        else:
            log.warning("%s again: stopping now", signal.Signals(signum).name)
            running.server.stop(None)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running.server.wait_for_termination()
    if finished and signals_seen == 1:  # the last rejects' heatmaps, queued after their answers
        finished[0].wait(HEATMAP_DRAIN_S + 1.0)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
