"""The paper's published figures (section 7.4, Tables 1-3), our first anchors.

Convention of the paper: "positive" = GOOD product. Its "true positive ratio"
is the share of good units accepted, its "true negative ratio" the share of
defective units rejected. Timings are on an NVIDIA A4500 with TensorFlow C++.
The paper does not give the unit of Table 2's "mean inference time" (0.4873).
"""
from __future__ import annotations

from typing import Any

PAPER_HARDWARE = "NVIDIA A4500, TensorFlow C++ API"

TABLE1_PER_REGION: dict[str, dict[str, float]] = {
    "R0": {"threshold": 0.015589, "accuracy": 0.9919, "good_accepted_rate": 0.9966,
           "defects_rejected_rate": 0.9093, "ms_per_patch": 0.1689},
    "R1": {"threshold": 0.038017, "accuracy": 0.9926, "good_accepted_rate": 0.9985,
           "defects_rejected_rate": 0.9044, "ms_per_patch": 0.1689},
    "R2": {"threshold": 0.046568, "accuracy": 0.9957, "good_accepted_rate": 0.9986,
           "defects_rejected_rate": 0.9779, "ms_per_patch": 0.1689},
    "R3": {"threshold": 0.029593, "accuracy": 0.9991, "good_accepted_rate": 0.9994,
           "defects_rejected_rate": 0.9973, "ms_per_patch": 0.1689},
}
TABLE1_VIAL: dict[str, float] = {"accuracy": 0.9870, "good_accepted_rate": 0.9942, "defects_rejected_rate": 0.9581}

TABLE2_PER_STRIP: dict[str, Any] = {
    "thresholds": {"R0": 0.016156, "R1": 0.038584, "R2": 0.046635, "R3": 0.029660},
    "accuracy": 0.9593, "good_accepted_rate": 0.9694, "defects_rejected_rate": 0.9467,
    "mean_inference_time_unit_unstated": 0.4873,
}

TABLE3_PER_RUN: dict[str, Any] = {
    "thresholds": {"R0": 0.013222, "R1": 0.034650, "R2": 0.046201, "R3": 0.029226},
    "accuracy": 0.9641, "good_accepted_rate": 0.9676, "defects_rejected_rate": 0.9599,
    "run_policy": {"k": 7, "n": 10},
}

KIT = {"defective_products": 141, "good_products": 120}


def as_dict() -> dict[str, Any]:
    """Everything above, for report.json."""
    return {"hardware": PAPER_HARDWARE, "kit": KIT, "table1_per_region": TABLE1_PER_REGION,
            "table1_vial": TABLE1_VIAL, "table2_per_strip": TABLE2_PER_STRIP, "table3_per_run": TABLE3_PER_RUN}
