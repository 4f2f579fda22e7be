"""train() runs under MirroredStrategy (two logical CPUs stand in for two GPUs) and in
mixed precision. Each case needs its own process (device layout is fixed at TF start)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from pathlib import Path
    import trainer.train as tt
    from trainer.config import PROFILES, TrainConfig
    mode, workdir = sys.argv[1], Path(sys.argv[2])
    if mode == "mirrored":
        tt.choose_strategy = lambda env=None: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    precision = "mixed_float16" if mode == "mixed" else "float32"
    patches = np.random.default_rng(0).random((64, 32, 32, 1)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices(patches).batch(4)  # 16 steps
    g = tt.train(TrainConfig(epochs=1, batch_size=4, verbose=0, precision=precision, sample_images=0),
                 PROFILES["tiny"], ds, None, workdir)
    x_hat = g(patches[:2], training=False)["x_hat"].numpy()
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
    # Under mixed precision the step counter is the wrapped (inner) optimizer's.
    steps = max(int(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()
                if k.startswith("g_optimizer/") and k.endswith("_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    print(json.dumps({"finite": bool(np.isfinite(x_hat).all()), "steps": steps,
                      "dtype": g.get_layer("encoder").compute_dtype}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mirrored", "mixed"])
def test_training_runs_distributed_and_in_mixed_precision(mode: str, tmp_path: Path) -> None:
    import json

    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["finite"]
    assert report["dtype"] == "float32"  # train() hands back an exportable float32 generator
    if mode == "mirrored":
        assert report["steps"] == 16
    else:
        # Dynamic loss scaling starts at 2**15 and skips the first steps whose float16
        # gradients overflow (the paper's weights make the loss ~50), then settles.
        assert 0 < report["steps"] < 16
