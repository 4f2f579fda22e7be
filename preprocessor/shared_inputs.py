"""Patches handed to a Triton on the same host through system shared memory, not gRPC.

Over gRPC the patches of one acquisition are copied into a protobuf, framed, sent
through the loopback and parsed back by Triton. With Triton's system shared-memory
API the client writes them once into a region both processes map, and the request
only names the region. Only where Triton runs on this host (the local stack, one
machine): a remote Triton cannot map our memory, so gRPC stays the default and the
fallback (PreprocessorConfig.triton_shared_memory).

A fixed pool of regions, one per call in flight (the preprocessor's admission
control bounds those), created and registered once. Registration is Triton's
restricted ``shared-memory`` protocol: the preprocessor holds that key only, never
the model-control one (vialguard_stack.triton_server). A restarted Triton has
forgotten every region: ``invalidate`` drops the registration and the next lease
registers again; a call that finds its region unknown is sent again over gRPC.

Regions are POSIX shared memory (multiprocessing.shared_memory): the key Triton
opens is the region's name with a leading slash.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np
import tritonclient.grpc as grpcclient

REGION_PREFIX = "vialguard-patches"
# The header Triton checks on its restricted protocols (vialguard_stack.triton_server.ADMIN_GRPC_HEADER).
SHM_GRPC_HEADER = "triton-grpc-protocol-vialguard-triton-admin"
RETRY_REGISTER_S = 5.0  # after a refused registration, gRPC alone for this long (no RPC storm per call)

log = logging.getLogger(__name__)


def shm_headers(key: str) -> dict[str, str] | None:
    """The headers that unlock Triton's shared-memory protocol with ``key`` (None: unrestricted server)."""
    return {SHM_GRPC_HEADER: key} if key else None


@dataclass
class Region:
    """One shared-memory region: the name Triton knows it by, and its memory."""

    name: str
    memory: shared_memory.SharedMemory

    @property
    def key(self) -> str:
        return "/" + self.memory.name

    def write(self, data: np.ndarray) -> None:
        """Copy ``data`` into the region's start (its one copy on the way to Triton)."""
        view = np.ndarray(data.shape, data.dtype, buffer=self.memory.buf)
        view[...] = data


class SharedInputs:
    """A pool of registered input regions of ``region_bytes`` each; thread-safe."""

    def __init__(self, slots: int, region_bytes: int, headers: Mapping[str, str] | None = None) -> None:
        if slots < 1 or region_bytes < 1:
            raise ValueError(f"need at least one region of at least one byte, got {slots} x {region_bytes}")
        self.region_bytes = region_bytes
        self._headers = dict(headers) if headers else None
        tag = f"{REGION_PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._regions = [Region(f"{tag}-{k}", shared_memory.SharedMemory(f"{tag}-{k}", create=True, size=region_bytes))
                         for k in range(slots)]
        self._free: queue.SimpleQueue[Region] = queue.SimpleQueue()
        for region in self._regions:
            self._free.put(region)
        self._lock = threading.Lock()
        self._registered = False
        self._next_try = 0.0

    @contextmanager
    def lease(self, client: grpcclient.InferenceServerClient) -> Iterator[Region | None]:
        """A free, registered region for one call, or None (none free, or registration failed: use gRPC)."""
        try:
            region = self._free.get_nowait()
        except queue.Empty:
            yield None
            return
        try:
            yield region if self._ensure_registered(client) else None
        finally:
            self._free.put(region)

    def invalidate(self) -> None:
        """Triton no longer knows our regions (it restarted): register them again at the next lease."""
        with self._lock:
            self._registered = False

    def close(self, client: grpcclient.InferenceServerClient | None = None) -> None:
        """Unregister (best effort) and remove every region."""
        for region in self._regions:
            if client is not None and self._registered:
                try:
                    client.unregister_system_shared_memory(region.name, headers=self._headers)
                except Exception:  # noqa: BLE001 - the server may be gone; the memory is ours to free
                    pass
            region.memory.close()
            region.memory.unlink()

    def _ensure_registered(self, client: grpcclient.InferenceServerClient) -> bool:
        with self._lock:
            if self._registered:
                return True
            if time.monotonic() < self._next_try:
                return False
            try:
                for region in self._regions:
                    try:
                        client.unregister_system_shared_memory(region.name, headers=self._headers)
                    except Exception:  # noqa: BLE001 - not registered yet, as expected
                        pass
                    client.register_system_shared_memory(region.name, region.key, self.region_bytes,
                                                         headers=self._headers)
            except Exception as exc:  # noqa: BLE001 - refused (no key, remote Triton): gRPC carries the patches
                self._next_try = time.monotonic() + RETRY_REGISTER_S
                log.warning("Triton refused the shared-memory regions (%s); patches go over gRPC, retry in %.0f s",
                            exc, RETRY_REGISTER_S)
                return False
            self._registered = True
            return True
