"""What the HMI costs the line: per-verdict stage times with the HMI attached and detached, interleaved.

One local stack (committed model), one kit of pre-rendered acquisitions pushed at
the line's pace. Blocks of acquisitions alternate between "HMI attached" (the HMI
process following WatchVerdicts, serving a page's event stream to a client that
reads it, and opening each reject's heatmaps as an operator would) and "detached"
(HMI stopped). Interleaving in one stack puts both conditions under the same
machine load, which on a shared machine drifts far more than the HMI could cost;
the figures compared are the stage times each verdict carries (queue wait,
aggregation, the preprocessor's total) and the camera's round trip, as medians per
condition. Prints figures only, never fails.

    python -m benchmarks.hmi_cost [--blocks 6] [--block-size 10] [--pace-ms 500]
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path

from vialguard.model_repository import latest_version
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack.camera import FrameEncoding, SimulatedCamera
from vialguard_stack.kit_source import HELD_OUT_SEED, simulated_shots
from vialguard_stack.local_stack import DEFAULT_REPOSITORY, REPO_ROOT, StackSettings, local_stack, start_hmi


class PageClient(threading.Thread):
    """Reads the HMI's event stream like an open page does, and opens each reject's detail."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.opened, self.stopping = url, 0, 0, threading.Event()
        self.started_ms = int(time.time() * 1000)

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url + "/events?rows=50", timeout=30) as stream:
                kind = ""
                for raw in stream:
                    if self.stopping.is_set():
                        return
                    line = raw.decode().strip()
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind == "verdict":
                        self.events += 1
                        row = json.loads(line[5:])
                        # An operator opens the rejects that come while watching, not the replayed backlog.
                        if row["decision"] == "REJECT" and row["decided_at_unix_ms"] >= self.started_ms:
                            self.opened += 1
                            urllib.request.urlopen(f"{self.url}/api/acquisitions/{row['acquisition_id']}",
                                                   timeout=10).read()
        except OSError:
            return


def cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in ms: a cost that load does not inflate."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hmi_cost", description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=6, help="blocks, alternating attached/detached (default 6)")
    p.add_argument("--block-size", type=int, default=10, help="acquisitions per block (default 10)")
    p.add_argument("--pace-ms", type=float, default=500.0, help="one acquisition per this many ms (the line's slot)")
    p.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    a = p.parse_args(argv)
    recipe = load_recipe()
    n = a.blocks * a.block_size
    shots = list(simulated_shots(recipe, n // 10 + 1, n // 10 + 1, 5, seed=HELD_OUT_SEED + 23))[:n]
    run_dir = REPO_ROOT / "runs" / time.strftime("hmi-cost-%Y%m%d-%H%M%S")
    settings = StackSettings(run_dir=run_dir, repository=a.repository, version=latest_version(a.repository), hmi=False)
    figures: dict[bool, dict[str, list[float]]] = {c: {"queue": [], "aggregation": [], "server_total": [],
                                                       "round_trip": []} for c in (True, False)}
    cpu: dict[bool, dict[str, float]] = {c: {"preprocessor": 0.0, "aggregator": 0.0, "hmi": 0.0} for c in (True, False)}
    with local_stack(settings) as stack:
        camera = SimulatedCamera(stack.preprocessor_target, recipe, FrameEncoding.RAW, deadline_ms=10_000,
                                 pace_ms=a.pace_ms)
        camera.push(shots[0])  # warm-up, not counted
        for block in range(a.blocks):
            attached = block % 2 == 0
            page = None
            if attached:
                url = start_hmi(stack.supervisor, settings, stack.preprocessor_target, stack.audit_db, print)
                page = PageClient(url)
                page.start()
                time.sleep(1.0)
            pids = {c.name: c.pid for c in stack.supervisor.children if c.name in cpu[attached]}
            before = {name: cpu_ms(pid) for name, pid in pids.items()}
            for result in camera.run(shots[block * a.block_size + 1:(block + 1) * a.block_size + 1]):
                v: pb.Verdict | None = result.verdict
                if v is None or result.status != "OK":
                    continue
                f = figures[attached]
                f["queue"].append(v.timings.queue_ms)
                f["aggregation"].append(v.timings.aggregation_ms)
                f["server_total"].append(v.timings.total_ms)
                f["round_trip"].append(result.latency_ms)
            for name, pid in pids.items():
                cpu[attached][name] += cpu_ms(pid) - before[name]
            if page is not None:
                page.stopping.set()
                stack.supervisor.stop("hmi")
                print(f"block {block}: HMI attached, its page received {page.events} verdict events and opened "
                      f"{page.opened} reject details")
        camera.close()
    print(f"\nHMI cost per verdict, medians over interleaved blocks ({a.blocks} x {a.block_size}, pace "
          f"{a.pace_ms:.0f} ms); verdicts attached {len(figures[True]['queue'])}, detached "
          f"{len(figures[False]['queue'])}")
    print(f"{'stage':<14}{'attached ms':>12}{'detached ms':>12}{'difference':>12}")
    for stage in ("queue", "aggregation", "server_total", "round_trip"):
        on, off = _median(figures[True][stage]), _median(figures[False][stage])
        print(f"{stage:<14}{on:>12.2f}{off:>12.2f}{on - off:>+12.2f}")
    print("\nCPU time per verdict (ms; user + system, from /proc)")
    for name in ("preprocessor", "aggregator", "hmi"):
        on = cpu[True][name] / max(1, len(figures[True]["queue"]))
        off = cpu[False][name] / max(1, len(figures[False]["queue"]))
        print(f"{name:<14}{on:>12.2f}{off:>12.2f}{on - off:>+12.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
