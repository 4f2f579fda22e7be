"""Which tf.distribute strategy and which precision a training run uses, from the hardware.

- TF_CONFIG set (a cluster description, as Kubernetes/TFJob or a launcher writes it):
  MultiWorkerMirroredStrategy across the nodes it lists.
- More than one local GPU: MirroredStrategy on this node.
- Otherwise the default strategy (one GPU or the CPU).
Mixed precision (mixed_float16) only when a GPU is present: on a CPU float16 is slower
and less accurate, and the paper trained in float32 on an A100 anyway.

The decisions are pure functions of (TF_CONFIG, GPU count) so they are testable
without a cluster; choose_strategy only builds what they name.
"""
from __future__ import annotations

import json
import os
from typing import Literal, Mapping

import keras
import tensorflow as tf

from trainer.config import ConfigError

StrategyKind = Literal["multi_worker", "mirrored", "default"]


def parse_tf_config(raw: str) -> dict:
    """TF_CONFIG as a dict, or a ConfigError saying what is wrong with it."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict) or not value["cluster"]:
        raise ConfigError('TF_CONFIG must hold a non-empty "cluster" mapping, e.g. {"cluster": {"worker": [...]}, "task": {...}}')
    task = value.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError('TF_CONFIG must say which task this node is: "task": {"type": "worker", "index": 0}')
    return value


def strategy_kind(tf_config: str | None, gpu_count: int) -> StrategyKind:
    """The strategy the hardware calls for (see the module docstring)."""
    if tf_config and tf_config.strip():
        parse_tf_config(tf_config)
        return "multi_worker"
    if gpu_count > 1:
        return "mirrored"
    return "default"


def is_chief(tf_config: str | None) -> bool:
    """True on the node that writes checkpoints and logs (worker 0 or the 'chief' task)."""
    if not tf_config or not tf_config.strip():
        return True
    config = parse_tf_config(tf_config)
    task = config["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in config["cluster"]


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def choose_strategy(env: Mapping[str, str] | None = None) -> tf.distribute.Strategy:
    """Build the strategy named by strategy_kind for this process."""
    env = os.environ if env is None else env
    kind = strategy_kind(env.get("TF_CONFIG"), gpu_count())
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(requested: str, gpus: int) -> str:
    """'auto' -> mixed_float16 with a GPU, float32 without; explicit values are kept."""
    if requested == "auto":
        return "mixed_float16" if gpus > 0 else "float32"
    if requested not in ("float32", "mixed_float16"):
        raise ConfigError(f"precision must be auto, float32 or mixed_float16, got '{requested}'")
    return requested


def configure_precision(requested: str) -> str:
    """Set Keras' global dtype policy for the models built next; returns its name."""
    name = precision_policy(requested, gpu_count())
    keras.mixed_precision.set_global_policy(name)
    return name
