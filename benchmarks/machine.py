"""Which CPU a benchmark ran on, in one line every benchmark prints first.

The served graph is bound by vector arithmetic and memory bandwidth, so the same
version takes very different times on different x86 CPUs: version 6 measured p50
190-230 ms per acquisition on an AVX-512 machine and 585-640 ms on an AVX2-only AMD
EPYC of family 23 (Zen 1), both with 2 cores (README, 'Speed on other CPUs'). A figure
without its CPU cannot be compared with another, or with the 500 ms slot of a line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

# Widest first: ONNX Runtime's MLAS picks its kernels by these CPUID flags.
VECTOR_LEVELS = (
    ("amx_tile", "AMX"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512f", "AVX-512"),
    ("avx2", "AVX2"),
    ("avx", "AVX"),
)


@dataclass(frozen=True)
class Machine:
    model: str        # the CPU's model name, as the kernel reports it
    family: str       # vendor family / model numbers: "AMD EPYC" alone does not tell Zen 1 from Zen 4
    cores: int
    vector: str       # the widest vector extension the kernels can use

    def line(self) -> str:
        return f"CPU: {self.model} ({self.family}), {self.cores} cores, widest vector extension {self.vector}"


def describe(cpuinfo: str, cores: int) -> Machine:
    """The first processor's entry of a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for raw in cpuinfo.splitlines():
        if not raw.strip():
            if fields:
                break  # the first processor is enough: all cores of a VM are alike
            continue
        key, _, value = raw.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    vector = next((name for flag, name in VECTOR_LEVELS if flag in flags), "none (SSE only)")
    family = f"{fields.get('vendor_id', 'unknown vendor')} family {fields.get('cpu family', '?')} " \
             f"model {fields.get('model', '?')}"
    return Machine(fields.get("model name", "unknown CPU"), family, cores, vector)


def this_machine() -> Machine:
    """This machine, from /proc/cpuinfo; a machine without one (not Linux) says so instead of failing."""
    cores = os.cpu_count() or 1
    try:
        text = CPUINFO.read_text()
    except OSError:
        return Machine("unknown CPU (no /proc/cpuinfo)", "?", cores, "unknown")
    return describe(text, cores)
