"""GetHeatmaps for the reject detail, with a small cache of rendered images.

A page shows several images of one acquisition; they come from one GetHeatmaps
call, rendered once (overlay, false colour, patch) and kept for the last few
acquisitions opened. A NOT_FOUND (accepted, or heatmaps expired) and an
UNAVAILABLE (the stack is down) are kept apart, so the page says which.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc

from hmi import overlay
from hmi.metrics import HmiMetrics
from vialguard.v1 import inspection_pb2 as pb
from vialguard.v1 import inspection_pb2_grpc as pb_grpc

PatchKey = tuple[int, int, int]   # (frame in the sequence, vial, region)
CALL_TIMEOUT_S = 5.0


@dataclass
class KeptImages:
    """Rendered PNGs of one acquisition, by patch; ``problem`` says why there are none."""

    images: dict[PatchKey, dict[str, bytes]] = field(default_factory=dict)
    code: str = "OK"
    problem: str = ""


class HeatmapSource:
    def __init__(self, channel: grpc.Channel, metrics: HmiMetrics, keep: int = 32) -> None:
        self._stub = pb_grpc.InspectionStub(channel)
        self._metrics = metrics
        self._keep = keep
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, KeptImages] = OrderedDict()

    def images(self, acquisition_id: str) -> KeptImages:
        with self._lock:
            kept = self._cache.get(acquisition_id)
            if kept is not None:
                self._cache.move_to_end(acquisition_id)
                return kept
        kept = self._fetch(acquisition_id)
        if kept.code in ("OK", "NOT_FOUND"):  # an outage is not cached: the next look retries
            with self._lock:
                self._cache[acquisition_id] = kept
                while len(self._cache) > self._keep:
                    self._cache.popitem(last=False)
        return kept

    def _fetch(self, acquisition_id: str) -> KeptImages:
        try:
            reply = self._stub.GetHeatmaps(pb.HeatmapRequest(acquisition_id=acquisition_id), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "UNKNOWN"
            self._metrics.heatmap_requests.labels(code).inc()
            return KeptImages(code=code, problem=exc.details() or code)
        self._metrics.heatmap_requests.labels("OK").inc()
        return KeptImages(images={(h.frame, h.vial, h.region): _render(h) for h in reply.heatmaps})


def _render(h: pb.PatchHeatmap) -> dict[str, bytes]:
    rendered = {"heatmap": overlay.false_colour(h.png)}
    if h.patch_png:
        rendered["patch"] = overlay.enlarged(h.patch_png)
        rendered["overlay"] = overlay.overlay(h.patch_png, h.png)
    return rendered
