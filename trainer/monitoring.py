"""Watching a long CPU training: the whole run's progress with an ETA, and held-out AUROC per epoch.

Keras prints a bar per epoch; a line engineer running a two-hour training wants to
know when the whole run ends, and whether the model is getting better at the job
(finding defects), not only at the losses. ``HeldOutAuroc`` scores a fixed handful of
acquisitions of a kit never trained on (good and defective products of the
calibration kit) with the fused local score (statistics from that handful's good
acquisitions) and logs the strip AUROC to TensorBoard as ``heldout/strip_auroc``.
It is a learning curve, not a qualification figure: those come from the held-out kit.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainer.metrics import auroc
from vialguard.local_score import PatchLayout, StatisticsAccumulator, local_scores

log = logging.getLogger(__name__)


class RunProgress(keras.callbacks.Callback):
    """One line per epoch: epochs done of the run, time spent, time left and the expected end."""

    def __init__(self, epochs: int, initial_epoch: int = 0) -> None:
        super().__init__()
        self.epochs, self.initial = epochs, initial_epoch
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        done = epoch + 1 - self.initial
        left = self.epochs - (epoch + 1)
        spent = time.monotonic() - self._start
        eta = spent / max(done, 1) * left
        end = time.strftime("%H:%M", time.localtime(time.time() + eta))
        bar = "#" * round(20 * (epoch + 1) / self.epochs)
        log.info("run progress [%-20s] epoch %d/%d, %.0f min spent, %.0f min left (ends about %s)",
                 bar, epoch + 1, self.epochs, spent / 60, eta / 60, end)


class HeldOutAuroc(keras.callbacks.Callback):
    """Strip AUROC of the fused local score on a few held-out acquisitions, per epoch, in TensorBoard."""

    def __init__(self, log_dir: Path, acquisitions: np.ndarray, defective: np.ndarray, layout: PatchLayout) -> None:
        super().__init__()
        self.patches = np.asarray(acquisitions, np.float16)  # [A, patches per acquisition, P, P, 1]
        self.defective = np.asarray(defective, bool)
        self.layout = layout
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "heldout"))
        self.history: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from trainer.kit_maps import keras_maps_fn

        from trainer.calibrate_local import DILATE, SMOOTH_SIGMA

        maps_fn = keras_maps_fn(self.model.generator)
        maps = [maps_fn(a.astype(np.float32))[0] for a in self.patches]
        # Out of fold, as calibration does: each half is scored with the other half's good statistics
        # (in-sample statistics would call every good acquisition's own bubbles "normal").
        half = np.arange(len(maps)) % 2
        strip = np.zeros(len(maps))
        for f in (0, 1):
            acc = StatisticsAccumulator(self.layout, fuse_frames=True, smooth_sigma=SMOOTH_SIGMA)
            others = [m for m, bad, h in zip(maps, self.defective, half) if not bad and h != f]
            for m in others or [m for m, bad in zip(maps, self.defective) if not bad]:  # a tiny sample: in-sample
                acc.add(m)
            if acc.samples < 2:
                log.warning("held-out AUROC skipped: the sample holds no good acquisition")
                return
            model = acc.model(dilate=DILATE)
            strip[half == f] = [local_scores(m, model).max() for m, h in zip(maps, half) if h == f]
        value = auroc(strip, self.defective)
        self.history.append(value)
        with self.writer.as_default(step=epoch):
            tf.summary.scalar("strip_auroc", value)
        self.writer.flush()
        if logs is not None:
            logs["heldout_strip_auroc"] = value
        log.info("held-out strip AUROC after epoch %d: %.4f (%d acquisitions, fused local score)",
                 epoch + 1, value, len(maps))


def heldout_sample(kit_patches: Path, inspected_frames: tuple[int, ...], layout: PatchLayout,
                   per_label: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_label`` acquisitions of good and of defective products (one run each) of a kit."""
    from trainer.kit_maps import patch_order
    from trainer.pipeline import labelled_dataset
    from trainer.scoring import labelled_stream

    chosen: list[np.ndarray] = []
    labels: list[bool] = []
    seen: set[str] = set()
    counts = {False: 0, True: 0}
    for patches, meta in labelled_stream(labelled_dataset(kit_patches), inspected_frames):
        product, bad = str(meta["product_id"][0]), bool(meta["acquisition_defective"][0])
        if product in seen or counts[bad] >= per_label:
            continue
        seen.add(product)
        counts[bad] += 1
        chosen.append(np.asarray(patches)[patch_order(meta, layout)].astype(np.float16))
        labels.append(bad)
        if min(counts.values()) >= per_label:
            break
    return np.stack(chosen), np.array(labels)
