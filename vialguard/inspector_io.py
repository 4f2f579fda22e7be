"""Names of the exported `inspector` graph's tensors, defined once.

The exporter, the Triton configs, the Python backend model and the preprocessor's
client all import these, so the names cannot drift.
"""
from __future__ import annotations

MODEL_NAME = "inspector"
INPUT_PATCHES = "patches"     # [N, P, P, 1]; N = whole acquisitions in patch order; dtype: see below
OUTPUT_SCORE = "score"        # float32 [N]: the score the decision uses (calibration.json names its kind)
OUTPUT_PHI = "phi"            # float32 [N]: the paper's phi = 1 - SSIM(X, X_hat) (eq. 9), always reported
OUTPUT_HEATMAP = "heatmap"    # float32 [N, P, P, 1]: min-max normalised |X - X_hat|
OUTPUTS = (OUTPUT_SCORE, OUTPUT_PHI, OUTPUT_HEATMAP)
ONNX_FILENAME = "model.onnx"
PLAN_FILENAME = "model.plan"
HEATMAP_ONNX_FILENAME = "heatmap.onnx"  # patches -> heatmap only, any N (trainer.onnx_heatmap_graph)
HEATMAP_GRAPH_PARAMETER = "heatmap_graph"  # Triton config parameter: "true" when the served version has it
# Request parameter: the caller's deadline, wall-clock ns since the epoch; the backend adapter
# answers a request still queued past it with an error instead of inferring it (invariant 8).
DEADLINE_PARAMETER = "deadline_unix_ns"
# Triton metric (counter, labels reason="cancelled"|"deadline", version) of requests the adapter so refused.
NOT_INFERRED_METRIC = "vialguard_inspector_not_inferred_total"
CALIBRATION_FILENAME = "calibration.json"
REPORT_MD_FILENAME = "report.md"
REPORT_JSON_FILENAME = "report.json"
ROC_PNG_FILENAME = "roc.png"
MANIFEST_FILENAME = "version.json"  # what the exporter records about a version (io, digests, layout)
LOCAL_SCORE_FILENAME = "local_score.npz"  # the local score's good statistics (also baked into the ONNX)
MAX_BATCH = 64                # one acquisition is 60 patches

# The patches' wire type. A version cut at the recipe's native size takes the camera's
# own pixels (MONO8 -> UINT8, MONO16 -> UINT16) and scales them inside the graph exactly
# as vialguard.patching.to_unit_float does: 4x fewer bytes than float32 to Triton. A
# version whose patches are resampled (a smaller profile), and every version exported
# before this existed, takes float32 in [0, 1]. version.json's io.input_datatype names it.
DATATYPE_FP32 = "FP32"
DATATYPE_BY_BIT_DEPTH = {8: "UINT8", 16: "UINT16"}
PIXEL_SCALE = {8: 255.0, 16: 65535.0}  # divisor of an integer pixel into [0, 1]
NUMPY_DTYPE = {"FP32": "float32", "UINT8": "uint8", "UINT16": "uint16"}  # KServe datatype -> numpy


def input_datatype(bit_depth: int | None) -> str:
    """The KServe datatype of the patches of a version scaling ``bit_depth``-bit pixels (None: float)."""
    return DATATYPE_FP32 if bit_depth is None else DATATYPE_BY_BIT_DEPTH[bit_depth]
