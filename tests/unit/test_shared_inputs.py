"""The shared-memory pool's own rules, against a fake client (the real server: tests/integration)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from preprocessor.config import from_env
from preprocessor.shared_inputs import SharedInputs, shm_headers


class Registry:
    """Records registrations; ``refuse`` makes every registration fail as a wrong key would."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse, self.registered, self.attempts = refuse, {}, 0

    def register_system_shared_memory(self, name: str, key: str, byte_size: int, headers: Any = None) -> None:
        self.attempts += 1
        if self.refuse:
            raise RuntimeError("This API is restricted")
        self.registered[name] = (key, byte_size, headers)

    def unregister_system_shared_memory(self, name: str = "", headers: Any = None) -> None:
        self.registered.pop(name, None)


@pytest.fixture()
def pool() -> Any:
    shared = SharedInputs(2, 1024, shm_headers("k"))
    yield shared
    shared.close()


def test_each_call_in_flight_gets_its_own_region_and_a_third_goes_over_grpc(pool: SharedInputs) -> None:
    client = Registry()
    with pool.lease(client) as first, pool.lease(client) as second, pool.lease(client) as third:  # type: ignore[arg-type]
        assert first is not None and second is not None and first.name != second.name and third is None
    assert len(client.registered) == 2 and all(v[2] == shm_headers("k") for v in client.registered.values())
    with pool.lease(client) as again:  # type: ignore[arg-type]
        assert again is not None  # given back after use


def test_a_region_holds_what_was_written_for_triton_to_read(pool: SharedInputs) -> None:
    from multiprocessing import shared_memory

    with pool.lease(Registry()) as region:  # type: ignore[arg-type]
        assert region is not None
        data = np.arange(100, dtype=np.uint8).reshape(1, 10, 10, 1)
        region.write(data)
        other = shared_memory.SharedMemory(region.key.lstrip("/"))  # as Triton opens it, by key
        assert bytes(other.buf[:100]) == data.tobytes()
        other.close()


def test_a_refused_registration_is_not_retried_on_every_call(pool: SharedInputs) -> None:
    client = Registry(refuse=True)
    for _ in range(3):
        with pool.lease(client) as region:  # type: ignore[arg-type]
            assert region is None
    assert client.attempts == 1


def test_invalidate_registers_again_at_the_next_lease(pool: SharedInputs) -> None:
    client = Registry()
    with pool.lease(client):  # type: ignore[arg-type]
        pass
    client.registered.clear()  # Triton restarted
    pool.invalidate()
    with pool.lease(client) as region:  # type: ignore[arg-type]
        assert region is not None and len(client.registered) == 2


def test_shared_memory_is_off_unless_configured() -> None:
    assert not from_env({}).triton_shared_memory
    config = from_env({"PREPROCESSOR_TRITON_SHARED_MEMORY": "1", "PREPROCESSOR_TRITON_SHM_KEY_FILE": "/run/key"})
    assert config.triton_shared_memory and config.triton_shm_key_file == "/run/key"
