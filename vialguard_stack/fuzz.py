"""Hostile bytes for the preprocessor: malformed requests, counted by status code, with its memory.

Mutations of one valid acquisition, seeded so a run can be repeated: random
bytes, bit flips, truncations, and field-level changes a broken or hostile
client could send (huge or control-character ids, another recipe, too many or
duplicated frames, absurd sizes and enum values, corrupt or lying PNGs, a reused
acquisition_id with other frames). Sent raw (no client-side serialization) to
Inspect, GetHeatmaps, WatchVerdicts and the health check. The promise checked:
no INTERNAL and no UNKNOWN, whatever the bytes, and the preprocessor's resident
memory (VmRSS) does not grow by more than 10 % between the end of the warm-up and
the end of the run.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import grpc
import numpy as np

from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack.fault_stack import FaultStack

INSPECT = "/vialguard.v1.Inspection/Inspect"
WATCH = "/vialguard.v1.Inspection/WatchVerdicts"
HEATMAPS = "/vialguard.v1.Inspection/GetHeatmaps"
HEALTH = "/grpc.health.v1.Health/Check"
FORBIDDEN = ("INTERNAL", "UNKNOWN")


@dataclass
class FuzzReport:
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    forbidden_examples: list[str] = field(default_factory=list)
    rss_kb: list[tuple[int, int]] = field(default_factory=list)  # (requests sent, VmRSS kB)
    seconds: float = 0.0

    @property
    def rss_growth(self) -> float:
        """Growth of resident memory from just after the warm-up to the end of the run.

        Medians, because RSS moves by tens of MB between two samples as the allocator
        takes and returns memory: the median of the samples from 10 % to 30 % of the run
        against the median of the last three. A leak shows as a steady climb either way.
        """
        if len(self.rss_kb) < 4:
            return 0.0
        early = [kb for n, kb in self.rss_kb if self.sent // 10 <= n <= 3 * self.sent // 10] or [self.rss_kb[1][1]]
        late = [kb for _, kb in self.rss_kb[-3:]]
        return _median(late) / _median(early) - 1.0


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _png(size: tuple[int, int], value: int = 128) -> bytes:
    ok, buf = cv2.imencode(".png", np.full(size, value, np.uint8))
    assert ok
    return buf.tobytes()


def mutations(base: pb.Acquisition, rng: random.Random) -> list[tuple[str, Callable[[], tuple[str, bytes]]]]:
    raw = base.SerializeToString()
    small = pb.Acquisition()
    small.CopyFrom(base)

    def field_change(change: Callable[[pb.Acquisition], None]) -> Callable[[], tuple[str, bytes]]:
        def make() -> tuple[str, bytes]:
            acq = pb.Acquisition()
            acq.CopyFrom(base)
            acq.acquisition_id = f"fuzz-{rng.getrandbits(48):x}"
            change(acq)
            return INSPECT, acq.SerializeToString()
        return make

    def flip() -> tuple[str, bytes]:
        data = bytearray(raw[: rng.randint(1, 4096)] if rng.random() < 0.7 else raw)
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return INSPECT, bytes(data)

    def frame(acq: pb.Acquisition) -> pb.Frame:
        return acq.frames[rng.randrange(len(acq.frames))]

    def corrupt_png(acq: pb.Acquisition) -> None:
        f = frame(acq)
        f.encoding = pb.PNG
        png = _png((f.height, f.width))
        f.data = png[: rng.randint(30, len(png) - 1)] + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))

    def lying_png(acq: pb.Acquisition) -> None:
        f = frame(acq)
        f.encoding = pb.PNG
        f.data = _png((rng.choice([1, 7, 64]), rng.choice([1, 9, 128])))

    def reused(acq: pb.Acquisition) -> None:
        acq.acquisition_id = "fuzz-reused-id"
        frame(acq).data = bytes(rng.getrandbits(8) for _ in range(16)) + frame(acq).data[16:]

    text = lambda n: "".join(chr(rng.choice([0, 7, 10, 32, 65, 0x202E, 0xFEFF, 0x1F600])) for _ in range(n))  # noqa: E731
    return [
        ("random bytes", lambda: (rng.choice([INSPECT, WATCH, HEATMAPS, HEALTH]),
                                  bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600))))),
        ("bit flips", flip),
        ("truncated", lambda: (INSPECT, raw[: rng.randint(0, 2048)])),
        ("huge ids", field_change(lambda a: setattr(a, rng.choice(["acquisition_id", "product_id", "recipe_id"]),
                                                    "x" * rng.choice([201, 10_000, 100_000])))),
        ("control chars", field_change(lambda a: setattr(a, rng.choice(["acquisition_id", "product_id"]), text(12)))),
        ("other recipe", field_change(lambda a: setattr(a, "recipe_id", text(rng.randint(1, 30))))),
        ("frame count", field_change(lambda a: [a.frames.add(index=rng.randrange(1 << 32))
                                                for _ in range(rng.choice([1, 20, 300]))])),
        ("no frames", field_change(lambda a: a.ClearField("frames"))),
        ("duplicate frame", field_change(lambda a: a.frames.append(a.frames[0]))),
        ("sizes", field_change(lambda a: setattr(frame(a), rng.choice(["width", "height", "index"]),
                                                 rng.choice([0, 1, 1023, 1 << 31, (1 << 32) - 1])))),
        ("enums", field_change(lambda a: setattr(frame(a), rng.choice(["pixel_format", "encoding"]),
                                                 rng.choice([0, 3, 99, (1 << 31) - 1])))),
        ("data length", field_change(lambda a: setattr(frame(a), "data", frame(a).data[: rng.randint(0, 5000)]))),
        ("corrupt png", field_change(corrupt_png)),
        ("lying png", field_change(lying_png)),
        ("reused id", field_change(reused)),
        ("watch", lambda: (WATCH, pb.WatchRequest(after_id=rng.choice(["x", "1-2-3", "9" * 50, text(5)]),
                                                  product_id=text(rng.randint(0, 300))).SerializeToString())),
        ("heatmaps", lambda: (HEATMAPS, pb.HeatmapRequest(acquisition_id=text(rng.randint(0, 500))).SerializeToString())),
    ]


def fuzz(stack: FaultStack, base: pb.Acquisition, count: int, seed: int = 7, workers: int = 4,
         max_seconds: float = 900.0, log: Callable[[str], None] = print) -> FuzzReport:
    """Send ``count`` malformed requests (stops early after ``max_seconds``); the report counts codes."""
    rng = random.Random(seed)
    kinds = mutations(base, rng)
    channel = grpc.insecure_channel(stack.target, options=[("grpc.max_send_message_length", 64 << 20)])
    calls = {m: (channel.unary_stream(m, None, None) if m == WATCH else channel.unary_unary(m, None, None))
             for m in (INSPECT, WATCH, HEATMAPS, HEALTH)}
    report, lock = FuzzReport(), threading.Lock()
    stop_at = time.monotonic() + max_seconds
    report.rss_kb.append((0, stack.rss_kb("preprocessor")))

    def one(kind: str, method: str, payload: bytes) -> None:
        try:
            reply = calls[method](payload, timeout=0.3 if method == WATCH else 3.0)
            if method == WATCH:
                next(iter(reply), None)  # a valid watch streams: one read is enough, then cancel
                reply.cancel()
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
            if method == WATCH and code == "CANCELLED":
                code = "OK"
            elif code == "DEADLINE_EXCEEDED" and method == WATCH:
                code = "OK"  # a valid, empty watch: nothing to stream within the deadline
        with lock:
            report.codes[code] += 1
            report.by_kind.setdefault(kind, Counter())[code] += 1
            if code in FORBIDDEN and len(report.forbidden_examples) < 5:
                report.forbidden_examples.append(f"{kind}: {code} {payload[:60]!r}")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for i in range(count):
            if time.monotonic() > stop_at:
                break
            kind, make = kinds[rng.randrange(len(kinds))]
            method, payload = make()
            pending.append(pool.submit(one, kind, method, payload))
            report.sent += 1
            if len(pending) >= workers * 4:
                pending.pop(0).result()
            if (i + 1) % 1000 == 0:
                report.rss_kb.append((i + 1, stack.rss_kb("preprocessor")))
                log(f"  fuzz {i + 1}/{count}: {dict(report.codes)} RSS {report.rss_kb[-1][1] / 1024:.0f} MB")
        for future in pending:
            future.result()
    report.rss_kb.append((report.sent, stack.rss_kb("preprocessor")))
    report.seconds = time.monotonic() - started
    channel.close()
    return report


def fuzz_table(report: FuzzReport) -> str:
    lines = [f"{report.sent} requests in {report.seconds:.0f} s; codes: "
             + ", ".join(f"{k} {v}" for k, v in sorted(report.codes.items())),
             f"INTERNAL {report.codes['INTERNAL']}, UNKNOWN {report.codes['UNKNOWN']}",
             "preprocessor RSS (MB) " + " -> ".join(f"{kb / 1024:.0f}" for _, kb in report.rss_kb[:: max(1, len(report.rss_kb) // 6)])
             + f" -> {report.rss_kb[-1][1] / 1024:.0f}; growth after warm-up {report.rss_growth * 100:+.1f} %",
             "| mutation | " + " | ".join(sorted(report.codes)) + " |",
             "|---|" + "---|" * len(report.codes)]
    for kind, codes in sorted(report.by_kind.items()):
        lines.append(f"| {kind} | " + " | ".join(str(codes.get(c, 0)) for c in sorted(report.codes)) + " |")
    lines += [f"forbidden: {e}" for e in report.forbidden_examples]
    return "\n".join(lines)
