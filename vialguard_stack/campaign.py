"""The fault campaign of issue 7, as a command: faults under traffic, then hostile bytes.

``python -m vialguard_stack.campaign [--load 1.5] [--scenarios ...] [--fuzz 10000]``
(``make campaign``). Everything runs on 127.0.0.1 (vialguard_stack.fault_stack):
real redis-server, tritonserver, aggregator and preprocessor processes.

1. Capacity: closed-loop Inspect calls for a few seconds measure what this machine
   scores per second now (a busy machine scores less; the load follows).
2. Each scenario sends acquisitions open-loop at ``load`` x capacity (or the line's
   pace) like the camera: a 5 s deadline per call, retrying UNAVAILABLE and
   DEADLINE_EXCEEDED with the same acquisition_id and the same frames; any other
   status is the answer (RESOURCE_EXHAUSTED: refused at once, the line rejects the
   strip). A fault is injected a few seconds in and healed a few seconds later.
3. Afterwards the verdict stream and the audit store are read back: every
   acquisition must have at most one verdict, every verdict its record, the chain
   must verify; the table says how many were answered first try, after a retry,
   refused, or never, which status codes were seen, and how long latency took to
   come back under 1 s after the fault ended.
4. The fuzz run (vialguard_stack.fuzz) throws malformed requests at the same
   preprocessor and counts the status codes and the preprocessor's memory.

Bounded: every scenario has a fixed duration and count, each call a deadline.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis

from preprocessor.encode import build_acquisition
from vialguard.messages import VERDICTS_STREAM
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc
from vialguard_stack.fault_stack import REPO_ROOT, FaultStack
from vialguard_stack.kit_source import simulated_shots

CALL_DEADLINE_S = 5.0
RETRY_PAUSE_S = 0.2
RETRY_BUDGET_S = 20.0          # a camera gives up on an acquisition after this long
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
RECOVERED_UNDER_S = 1.0        # queue wait (latency beyond the unloaded service time) back under this
SCENARIOS = ("baseline", "kill-aggregator", "kill-redis", "kill-triton", "hot-update", "sigterm-preprocessor",
             "sigterm-aggregator", "sigterm-both")


@dataclass
class Outcome:
    acquisition_id: str
    sent_at: float
    codes: list[str] = field(default_factory=list)
    first_ms: float = 0.0              # duration of the first attempt
    verdict_version: int | None = None
    verdict_attempt: int = 0           # 1: first try
    final: str = "never"               # OK / a refusal code / never
    silent: int = 0                    # attempts the server did not answer before the client's deadline


class TritonQueueSampler:
    """Triton's own queue time (its statistics API), averaged per half second, during a scenario.

    This is the figure the issue's collapse showed ("1,334 requests queued, average wait
    72 s"): recovery means it is back under 1 s soon after the fault ends.
    """

    def __init__(self, stack: FaultStack, every_s: float = 0.5) -> None:
        self.stack, self.every_s = stack, every_s
        self.samples: list[tuple[float, float, int]] = []  # (monotonic time, avg queue ms, requests)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-queue", daemon=True)

    def _read(self) -> tuple[int, int] | None:
        import tritonclient.grpc as grpcclient

        triton = self.stack.triton
        if triton is None or not triton.running():
            return None
        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            stats = client.get_inference_statistics("inspector", as_json=True, client_timeout=1.0)["model_stats"]
            queue = [s["inference_stats"].get("queue", {}) for s in stats]
            return sum(int(q.get("count", 0)) for q in queue), sum(int(q.get("ns", 0)) for q in queue)
        except Exception:  # Triton down or restarting: no sample
            return None
        finally:
            client.close()

    def _run(self) -> None:
        last = self._read()
        while not self._halt.wait(self.every_s):
            now = self._read()
            if now is not None and last is not None and now[0] >= last[0] and now[1] >= last[1]:
                count = now[0] - last[0]
                if count:
                    self.samples.append((time.monotonic(), (now[1] - last[1]) / count / 1e6, count))
            last = now

    def __enter__(self) -> "TritonQueueSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(5)

    def worst_ms(self) -> float:
        return max((ms for _, ms, _ in self.samples), default=0.0)

    def under_1s_after(self, healed_at: float) -> float | None:
        """Seconds after ``healed_at`` from which every half second's average queue wait is < 1 s."""
        after = [(t, ms) for t, ms, _ in self.samples if t >= healed_at]
        if not after:
            return None
        bad = [t for t, ms in after if ms >= RECOVERED_UNDER_S * 1000]
        return 0.0 if not bad else max(0.0, max(bad) - healed_at)


@dataclass
class ScenarioResult:
    name: str
    rate: float
    outcomes: list[Outcome]
    fault_at: float
    healed_at: float
    duplicates: int
    unrecorded: int
    wrong_version: int
    versions: set[int]
    service_ms: float = 0.0  # one acquisition alone on the stack, measured before the scenarios
    triton_queue_worst_ms: float = 0.0
    triton_queue_recovered_s: float | None = None

    def row(self) -> dict[str, object]:
        o = self.outcomes
        codes = Counter(c for x in o for c in x.codes)
        refused = Counter(x.final for x in o if x.final not in ("OK", "never"))
        return {
            "scenario": self.name, "rate/s": f"{self.rate:.2f}", "sent": len(o),
            "first try": sum(x.verdict_attempt == 1 for x in o),
            "after retry": sum(x.verdict_attempt > 1 for x in o),
            "refused": sum(refused.values()), "never": sum(x.final == "never" for x in o),
            "duplicates": self.duplicates, "unrecorded": self.unrecorded, "wrong version": self.wrong_version,
            "silent": sum(x.silent for x in o), "recovered s": _fmt(self.recovered_s()),
            "triton queue max ms": f"{self.triton_queue_worst_ms:.0f}",
            "queue <1 s after s": _fmt(self.triton_queue_recovered_s),
            "p50/p99 ms": _percentiles([x.first_ms for x in o if x.verdict_attempt == 1]),
            "codes": " ".join(f"{k}:{v}" for k, v in sorted(codes.items())),
        }

    def recovered_s(self) -> float | None:
        """Seconds from the fault's end until every later acquisition was answered at its first try
        (verdict or refusal) with less than 1 s of queue wait (latency beyond the unloaded service time)."""
        late = [x for x in self.outcomes if x.sent_at >= self.healed_at]
        if not late:
            return None
        limit_ms = self.service_ms + RECOVERED_UNDER_S * 1000
        bad = [x.sent_at for x in late if not x.codes or x.first_ms >= limit_ms
               or x.codes[0] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")]
        return 0.0 if not bad else max(0.0, max(bad) - self.healed_at)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"{pick(0.5):.0f}/{pick(0.99):.0f}"


class Camera:
    """The campaign's camera: open-loop sends, each acquisition retried as the line's camera does."""

    def __init__(self, target: str, templates: Sequence[pb.Acquisition], workers: int = 48) -> None:
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub = pb_grpc.InspectionStub(self.channel)
        self.templates = templates
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="camera")
        self.lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.channel.close()

    def _one(self, outcome: Outcome, request: pb.Acquisition) -> None:
        give_up = outcome.sent_at + RETRY_BUDGET_S
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            details = ""
            try:
                verdict = self.stub.Inspect(request, timeout=CALL_DEADLINE_S)
                code = "OK"
            except grpc.RpcError as exc:
                verdict, code, details = None, exc.code().name, exc.details() or ""
            took = time.monotonic() - started
            outcome.codes.append(code)
            # The server answers a deadline it cannot meet with its own message, 10 ms early; a bare
            # "Deadline Exceeded" is the client's own timer: the server said nothing in time.
            outcome.silent += code == "DEADLINE_EXCEEDED" and "acquisition" not in details
            if attempt == 1:
                outcome.first_ms = took * 1000
            if verdict is not None:
                outcome.final, outcome.verdict_attempt, outcome.verdict_version = "OK", attempt, verdict.model_version
                return
            if grpc.StatusCode[code] not in RETRIED:
                outcome.final = code
                return
            if time.monotonic() + RETRY_PAUSE_S >= give_up:
                return
            time.sleep(RETRY_PAUSE_S)

    def send(self, acquisition_id: str, index: int) -> tuple[Outcome, object]:
        request = pb.Acquisition()
        request.CopyFrom(self.templates[index % len(self.templates)])
        request.acquisition_id = acquisition_id
        outcome = Outcome(acquisition_id, time.monotonic())
        return outcome, self.pool.submit(self._one, outcome, request)


def templates(count: int = 4) -> list[pb.Acquisition]:
    """Simulated strips (their inspected frames, raw), rendered once and reused under new ids."""
    recipe = load_recipe()
    shots = list(simulated_shots(recipe, good=count // 2, defective=count - count // 2, runs=1, seed=7_770_007))
    return [build_acquisition("template", f"campaign-{s.product_id}", 0, recipe.id,
                              [s.frames[i] for i in recipe.inspected_frames], recipe.inspected_frames)
            for s in shots]


def measure_capacity(camera: Camera, seconds: float, parallel: int = 2) -> float:
    """Verdicts per second with ``parallel`` back-to-back callers: what this machine does now."""
    done, stop_at = Counter(), time.monotonic() + seconds
    started = time.monotonic()

    def loop(worker: int) -> None:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            try:
                camera.stub.Inspect(_named(camera.templates[i % len(camera.templates)], f"cap-{worker}-{i}"),
                                    timeout=CALL_DEADLINE_S)
                done["ok"] += 1
            except grpc.RpcError:
                done["failed"] += 1

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done["ok"] / (time.monotonic() - started)


def _named(template: pb.Acquisition, acquisition_id: str) -> pb.Acquisition:
    request = pb.Acquisition()
    request.CopyFrom(template)
    request.acquisition_id = acquisition_id
    return request


def _fault(stack: FaultStack, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(inject, heal) of a scenario."""
    if name == "baseline":
        return (lambda: None), (lambda: None)
    if name == "hot-update":
        return (lambda: None), (lambda: stack.hot_update())
    if name == "sigterm-both":  # as `docker compose stop` of the two services, then up again
        def stop_both() -> None:
            threads = [threading.Thread(target=stack.terminate, args=(n,)) for n in ("preprocessor", "aggregator")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return stop_both, (lambda: (stack.restart("aggregator"), stack.restart("preprocessor")) and None)
    kind, part = name.split("-", 1)
    part = {"redis": "redis", "triton": "triton", "aggregator": "aggregator", "preprocessor": "preprocessor"}[part]
    inject = (lambda: stack.kill(part)) if kind == "kill" else (lambda: stack.terminate(part))
    return inject, (lambda: stack.restart(part))


def service_time_ms(camera: Camera, calls: int = 5) -> float:
    """Median latency of one acquisition alone on the stack: the floor of every latency under load."""
    took = []
    for i in range(calls):
        started = time.monotonic()
        camera.stub.Inspect(_named(camera.templates[i % len(camera.templates)], f"alone-{i}"), timeout=30)
        took.append((time.monotonic() - started) * 1000)
    return sorted(took)[len(took) // 2]


def run_scenario(stack: FaultStack, camera: Camera, name: str, rate: float, before_s: float = 4.0,
                 down_s: float = 3.0, after_s: float = 12.0, log: Callable[[str], None] = print,
                 service_ms: float = 0.0) -> ScenarioResult:
    inject, heal = _fault(stack, name)
    versions = {stack.version}
    outcomes, futures = [], []
    start = time.monotonic()
    end = start + before_s + down_s + after_s
    fault_at = start + before_s
    healed_at = end
    state = {"injected": False, "healed": False}

    def faults() -> None:
        nonlocal healed_at
        time.sleep(max(0.0, fault_at - time.monotonic()))
        inject()
        state["injected"] = True
        time.sleep(down_s)
        heal()
        healed_at = time.monotonic()
        state["healed"] = True

    injector = threading.Thread(target=faults, name=f"fault-{name}")
    with TritonQueueSampler(stack) as sampler:
        injector.start()
        i = 0
        while time.monotonic() < end:
            outcome, future = camera.send(f"{name}-{i:05d}", i)
            outcomes.append(outcome)
            futures.append(future)
            i += 1
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
        injector.join()
        versions.add(stack.version)
        for future in futures:
            future.result()  # type: ignore[attr-defined]
    duplicates, unrecorded = _read_back(stack, [o.acquisition_id for o in outcomes if o.final == "OK"], name)
    wrong = sum(o.verdict_version is not None and o.verdict_version not in versions for o in outcomes)
    result = ScenarioResult(name, rate, outcomes, fault_at, healed_at, duplicates, unrecorded, wrong, versions,
                            service_ms, sampler.worst_ms(), sampler.under_1s_after(healed_at))
    log(f"  {name}: {result.row()}")
    return result


def _read_back(stack: FaultStack, answered: list[str], prefix: str) -> tuple[int, int]:
    """(verdicts streamed more than once, answered verdicts missing from the audit store)."""
    time.sleep(1.0)  # the last verdicts reach the stream and the record
    client = redis.Redis.from_url(stack.url("operator"), protocol=2)
    try:
        streamed = Counter(f[b"acquisition_id"].decode() for _, f in client.xrange(VERDICTS_STREAM)
                           if f[b"acquisition_id"].decode().startswith(prefix + "-"))
    finally:
        client.close()
    recorded: Counter[str] = Counter()
    audit_dir = stack.run_dir / "audit"
    for path in sorted(audit_dir.glob("verdicts*.sqlite3")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            recorded.update(r[0] for r in db.execute("SELECT acquisition_id FROM verdicts WHERE acquisition_id LIKE ?",
                                                     (prefix + "-%",)))
        finally:
            db.close()
    duplicates = sum(n - 1 for n in streamed.values() if n > 1) + sum(n - 1 for n in recorded.values() if n > 1)
    return duplicates, sum(1 for a in answered if a not in recorded)


def table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    line = lambda r: "| " + " | ".join(str(r[k]).ljust(widths[k]) for k in keys) + " |"  # noqa: E731
    return "\n".join([line({k: k for k in keys}), "|" + "|".join("-" * (widths[k] + 2) for k in keys) + "|",
                      *(line(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vialguard_stack.campaign", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", type=float, default=1.5, help="offered load as a multiple of measured capacity")
    parser.add_argument("--pace-ms", type=float, default=0.0, help="send at the line's pace instead (e.g. 500)")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--capacity-s", type=float, default=10.0)
    parser.add_argument("--fuzz", type=int, default=10_000, help="malformed requests after the scenarios (0: none)")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository")
    args = parser.parse_args(argv)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="vialguard-campaign-"))
    print(f"campaign in {run_dir} (loopback only)")
    stack = FaultStack.create(run_dir, args.repository)
    stack.start()
    camera = Camera(stack.target, templates())
    try:
        for i in range(3):  # warm the model and the code paths
            camera.stub.Inspect(_named(camera.templates[i % len(camera.templates)], f"warm-{i}"), timeout=30)
        alone_ms = service_time_ms(camera)
        capacity = measure_capacity(camera, args.capacity_s)
        rate = 1000.0 / args.pace_ms if args.pace_ms else args.load * capacity
        print(f"one acquisition alone: {alone_ms:.0f} ms; capacity now: {capacity:.2f} acquisitions/s; "
              f"offered load {rate:.2f}/s")
        results = [run_scenario(stack, camera, name, rate, service_ms=alone_ms) for name in args.scenarios]
        print("\nfault campaign (camera: 5 s deadline, retries UNAVAILABLE/DEADLINE_EXCEEDED, same id):")
        print(table([r.row() for r in results]))
        from aggregator.audit_cli import main as verify

        print("\naudit chain:", end=" ", flush=True)
        verify(["verify", str(run_dir / "audit" / "verdicts.sqlite3"),
                "--key-file", str(run_dir / "audit-key" / "audit.key"),
                "--anchor", str(run_dir / "audit-anchor" / "verdicts.head.json")])
        if args.fuzz:
            from vialguard_stack.fuzz import fuzz, fuzz_table

            report = fuzz(stack, camera.templates[0], args.fuzz)
            print("\nfuzz:")
            print(fuzz_table(report))
    finally:
        camera.close()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
