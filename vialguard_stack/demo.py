"""The README's "run" command: the whole stack on one machine, fed by a simulated camera.

    python -m vialguard_stack.demo [--good 3 --defective 3 --runs 10 --seed N]   (make demo)

Starts a real redis-server and a real tritonserver (CPU config), the aggregator and
the preprocessor; renders a Knapp-style kit with the simulator from a held-out seed
(or reads one with --kit); pushes every acquisition through gRPC Inspect like the
line's camera; prints each verdict as it comes back, then a table per product
under the run policy and a summary; and stops everything: at the end, on Ctrl-C,
or on SIGTERM. Logs of every process stay in the run directory.

The operator HMI starts with the stack (its URL is printed first, so a person can
watch the kit run); `--keep-running` leaves the stack and the HMI up after the kit,
until Ctrl-C, and `--no-hmi` leaves the HMI out.

From a test: `run_demo(DemoConfig(...)) -> DemoResult`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vialguard.errors import VialguardError
from vialguard.recipe import DEFAULT_RECIPE_ID, load_recipe
from vialguard_stack.camera import LINE_SLOT_MS, FrameEncoding, FrameSelection, Shot, SimulatedCamera
from vialguard_stack.demo_report import (
    ACQUISITION_TABLE, PRODUCT_TABLE, DemoResult, acquisition_row, outcome_from, product_outcomes, product_row,
    product_why_lines, run_policy_of, summary_lines,
)
from vialguard_stack.kit_source import HELD_OUT_SEED, directory_shots, simulated_shots
from vialguard_stack.local_stack import DEFAULT_REPOSITORY, REPO_ROOT, StackNotReady, StackSettings, local_stack, preflight
from vialguard_stack.triton_server import DEFAULT_ENV, TritonStartError

EXIT_NOT_READY, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


@dataclass(frozen=True)
class DemoConfig:
    good: int = 3
    defective: int = 3
    runs: int = 10
    seed: int = HELD_OUT_SEED
    kit: Path | None = None                     # a dataset folder instead of rendering a kit
    recipe: str = DEFAULT_RECIPE_ID
    encoding: FrameEncoding = FrameEncoding.PNG
    frames: FrameSelection = FrameSelection.INSPECTED
    deadline_ms: float = LINE_SLOT_MS           # the line's slot: later is a miss
    pace_ms: float = 0.0                        # 500 = one acquisition per slot, like the machine
    repository: Path = DEFAULT_REPOSITORY
    version: int | None = None
    triton_env: Path = DEFAULT_ENV
    run_dir: Path = field(default_factory=lambda: REPO_ROOT / "runs" / time.strftime("demo-%Y%m%d-%H%M%S"))
    hmi: bool = True                            # start the operator HMI with the stack
    keep_running: bool = False                  # after the kit, keep the stack and the HMI up until Ctrl-C
    hmi_port: int = 0                           # 0: a free port

    def __post_init__(self) -> None:
        if self.kit is None and (self.good < 0 or self.defective < 0 or self.good + self.defective == 0
                                 or self.runs < 1):
            raise ValueError("the demo needs at least one product (--good/--defective) and one run (--runs)")


def _shots(config: DemoConfig) -> Iterator[Shot]:
    recipe = load_recipe(config.recipe)
    if config.kit is not None:
        return directory_shots(config.kit, recipe)
    return simulated_shots(recipe, config.good, config.defective, config.runs, config.seed)


LABELS_FILE = "kit-labels.jsonl"


def _labelled(shots: Iterable[Shot], path: Path) -> Iterator[Shot]:
    """The shots, each one's label appended to ``path`` just before it is pushed (the HMI's product view reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for shot in shots:
        if shot.label is not None and shot.product_id not in seen:
            seen.add(shot.product_id)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"product_id": shot.product_id, "label": shot.label}) + "\n")
        yield shot


def _wait_for_ctrl_c(stack_check: Callable[[], None], out: Callable[[str], None]) -> None:
    try:
        while True:
            stack_check()
            time.sleep(1.0)
    except KeyboardInterrupt:
        out("Ctrl-C: stopping the stack ...")


def run_demo(config: DemoConfig, out: Callable[[str], None] = print) -> DemoResult:
    """Start the stack, push the kit, print the tables, stop the stack; return what was measured.

    Raises StackNotReady (something to install or train first), ServiceExited or
    ServiceNotReady (a process failed: the message quotes its log), and lets
    KeyboardInterrupt through after the stack is stopped.
    """
    labels = Path(config.run_dir).resolve() / LABELS_FILE
    settings = StackSettings(run_dir=config.run_dir, repository=config.repository, recipe=config.recipe,
                             triton_env=config.triton_env, version=config.version, hmi=config.hmi,
                             hmi_port=config.hmi_port, labels=labels)
    ready = preflight(settings)
    what = f"kit {config.kit}" if config.kit else (
        f"simulated kit: {config.good} good + {config.defective} defective products x {config.runs} runs, "
        f"seed {config.seed} (held out from training)")
    out(f"vialguard demo: model version {ready.version}, {what}")
    out(f"run directory (logs, Redis AOF, audit): {settings.run_dir}")
    outcomes = []
    with local_stack(settings, log=lambda line: out("  " + line)) as stack:
        if stack.hmi_url:
            out(f"operator HMI: {stack.hmi_url}/live  (open it in a browser to watch the kit)")
        out(f"metrics: {stack.preprocessor_metrics_url}  {stack.aggregator_metrics_url}"
            + (f"  {stack.hmi_url}/metrics" if stack.hmi_url else ""))
        out(f"camera: {config.frames.value} frames as {config.encoding.value.upper()}, deadline "
            f"{config.deadline_ms:.0f} ms, " + (f"one acquisition per {config.pace_ms:.0f} ms" if config.pace_ms
                                                else "as fast as verdicts come back"))
        out("")
        out(ACQUISITION_TABLE.header())
        with SimulatedCamera(stack.preprocessor_target, load_recipe(config.recipe), config.encoding, config.frames,
                             config.deadline_ms, config.pace_ms) as camera:
            for result in camera.run(_labelled(_shots(config), labels)):
                outcome = outcome_from(result)
                outcomes.append(outcome)
                out(ACQUISITION_TABLE.row(acquisition_row(outcome)))
                stack.supervisor.check_alive()
        policy = run_policy_of(outcomes)
        result = DemoResult(outcomes, product_outcomes(outcomes, policy), policy, config.deadline_ms,
                            Path(settings.run_dir))
        out("")
        out(f"per product, run policy {policy.k} of {policy.n}:")
        out(PRODUCT_TABLE.render([product_row(p) for p in result.products]))
        for line in product_why_lines(result.products):
            out(line)
        out("")
        for line in summary_lines(result):
            out(line)
        if config.keep_running:
            out("")
            out(f"the kit is done; the stack{' and the HMI at ' + stack.hmi_url + '/live' if stack.hmi_url else ''} "
                f"keep running until Ctrl-C")
            _wait_for_ctrl_c(stack.supervisor.check_alive, out)
        else:
            out("stopping the stack ...")
    return result


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    p = argparse.ArgumentParser(prog="python -m vialguard_stack.demo", description=__doc__.splitlines()[0])
    p.add_argument("--good", type=int, default=3, help="good products in the simulated kit (default 3)")
    p.add_argument("--defective", type=int, default=3, help="defective products (default 3)")
    p.add_argument("--runs", type=int, default=10, help="acquisitions per product (default 10)")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=f"kit seed (default {HELD_OUT_SEED}, held out)")
    p.add_argument("--kit", type=Path, help="push this dataset folder instead of rendering a kit")
    p.add_argument("--recipe", default=DEFAULT_RECIPE_ID)
    p.add_argument("--encoding", choices=[e.value for e in FrameEncoding], default="png")
    p.add_argument("--frames", choices=[s.value for s in FrameSelection], default="inspected",
                   help="send only the inspected frames (default) or all 16")
    p.add_argument("--deadline-ms", type=float, default=LINE_SLOT_MS, help="per-call deadline (default 500)")
    p.add_argument("--pace-ms", type=float, default=0.0, help="one acquisition per this many ms (0: no pacing)")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    p.add_argument("--version", type=int, help="model version to serve (default: the newest)")
    p.add_argument("--run-dir", type=Path, help="where logs go (default runs/demo-<time>)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the kit, keep the stack and the HMI running until Ctrl-C, so a person can look")
    p.add_argument("--no-hmi", action="store_true", help="do not start the operator HMI")
    p.add_argument("--hmi-port", type=int, default=0, help="HMI port on 127.0.0.1 (default: a free one)")
    a = p.parse_args(argv)
    extra = {"run_dir": a.run_dir} if a.run_dir else {}
    return DemoConfig(a.good, a.defective, a.runs, a.seed, a.kit, a.recipe, FrameEncoding(a.encoding),
                      FrameSelection(a.frames), a.deadline_ms, a.pace_ms, a.repository, a.version,
                      hmi=not a.no_hmi, keep_running=a.keep_running, hmi_port=a.hmi_port, **extra)


def _print_now(line: str) -> None:
    """Each row as its verdict comes, also through a pipe (make demo | tee demo.log), not at the end."""
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        config = parse_args(argv)
        result = run_demo(config, out=_print_now)
    except StackNotReady as exc:
        print(f"\nvialguard demo cannot start: {exc}", file=sys.stderr)
        return EXIT_NOT_READY
    except KeyboardInterrupt:
        print("\ninterrupted: every process of the stack was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (VialguardError, TritonStartError, ValueError) as exc:
        print(f"\nvialguard demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0 if result.failures == 0 else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
