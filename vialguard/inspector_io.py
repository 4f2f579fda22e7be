"""Names of the exported `inspector` graph's tensors, defined once.

The exporter, the Triton configs, the Python backend model and the preprocessor's
client all import these, so the names cannot drift.
"""
from __future__ import annotations

MODEL_NAME = "inspector"
INPUT_PATCHES = "patches"     # float32 [N, P, P, 1] in [0, 1]; N = whole acquisitions in patch order
OUTPUT_SCORE = "score"        # float32 [N]: the score the decision uses (calibration.json names its kind)
OUTPUT_PHI = "phi"            # float32 [N]: the paper's phi = 1 - SSIM(X, X_hat) (eq. 9), always reported
OUTPUT_HEATMAP = "heatmap"    # float32 [N, P, P, 1]: min-max normalised |X - X_hat|
OUTPUTS = (OUTPUT_SCORE, OUTPUT_PHI, OUTPUT_HEATMAP)
ONNX_FILENAME = "model.onnx"
PLAN_FILENAME = "model.plan"
CALIBRATION_FILENAME = "calibration.json"
REPORT_MD_FILENAME = "report.md"
REPORT_JSON_FILENAME = "report.json"
ROC_PNG_FILENAME = "roc.png"
LOCAL_SCORE_FILENAME = "local_score.npz"  # the local score's good statistics (also baked into the ONNX)
MAX_BATCH = 64                # one acquisition is 60 patches
