"""benchmarks.machine: the CPU line every benchmark prints, read from /proc/cpuinfo."""
from __future__ import annotations

from benchmarks.machine import describe, this_machine

ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx f16c fma avx2 bmi2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: something else
flags\t\t: avx512f
"""

SAPPHIRE = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: avx avx2 avx512f avx512_vnni avx512_bf16 amx_tile
"""


def test_the_first_processor_names_the_cpu_and_its_widest_vector_extension() -> None:
    m = describe(ZEN1, 2)
    assert (m.model, m.family, m.cores, m.vector) == ("AMD EPYC", "AuthenticAMD family 23 model 1", 2, "AVX2")
    assert m.line() == "CPU: AMD EPYC (AuthenticAMD family 23 model 1), 2 cores, widest vector extension AVX2"


def test_the_widest_extension_wins_and_a_bare_cpu_says_so() -> None:
    assert describe(SAPPHIRE, 2).vector == "AMX"
    assert describe(SAPPHIRE.replace(" amx_tile", ""), 2).vector == "AVX-512 BF16"
    assert describe("processor : 0\nflags : sse sse2\n", 1).vector == "none (SSE only)"
    assert describe("", 1).model == "unknown CPU"


def test_this_machine_is_described_without_failing() -> None:
    m = this_machine()
    assert m.cores >= 1 and m.line().startswith("CPU: ")
