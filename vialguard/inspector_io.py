"""Names of the exported `inspector` graph's tensors, defined once.

The exporter, the Triton configs, the Python backend model and the preprocessor's
client all import these, so the names cannot drift.
"""
from __future__ import annotations

MODEL_NAME = "inspector"
INPUT_PATCHES = "patches"     # float32 [N, P, P, 1] in [0, 1]
OUTPUT_SCORE = "score"        # float32 [N]: phi = 1 - SSIM(X, X_hat)
OUTPUT_HEATMAP = "heatmap"    # float32 [N, P, P, 1]: min-max normalised |X - X_hat|
ONNX_FILENAME = "model.onnx"
PLAN_FILENAME = "model.plan"
CALIBRATION_FILENAME = "calibration.json"
REPORT_MD_FILENAME = "report.md"
REPORT_JSON_FILENAME = "report.json"
ROC_PNG_FILENAME = "roc.png"
MAX_BATCH = 64                # one acquisition is 60 patches
