"""The evaluation report of one version: report.md, report.json and roc.png.

Written beside the model in the version directory, so that whoever loads a
version can see what it was measured to do, next to the paper's figures.
Rates are named plainly: "good accepted" is the paper's TPR (its positive is a
good product), "defects rejected" its TNR.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from trainer import paper_figures as paper
from trainer.evaluate import Evaluation
from trainer.metrics import DecisionCounts, RocCurve
from trainer.qualification import qualification_markdown
from vialguard.inspector_io import REPORT_JSON_FILENAME, REPORT_MD_FILENAME, ROC_PNG_FILENAME
from vialguard.recipe import REGION_IDS

ROC_POINTS_KEPT = 101
CONVENTION = ("Paper convention: positive = GOOD product. 'Good accepted' is the paper's true positive ratio "
              "(1 - false-reject rate); 'defects rejected' is its true negative ratio (detection rate). "
              "ROC curves use the detection convention: x = good units rejected, y = defects rejected.")


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _roc_json(curve: RocCurve) -> dict[str, Any]:
    """AUROC and at most ROC_POINTS_KEPT points of the curve (evenly picked, ends kept)."""
    n = curve.false_reject_rate.size
    keep = np.unique(np.linspace(0, n - 1, min(n, ROC_POINTS_KEPT)).round().astype(int))
    auroc = None if np.isnan(curve.auroc) else float(curve.auroc)
    return {"auroc": auroc, "good_rejected": curve.false_reject_rate[keep].tolist(),
            "defects_rejected": curve.detection_rate[keep].tolist()}


def report_json(ev: Evaluation) -> dict[str, Any]:
    cal = ev.calibration
    patch_t = cal.thresholds["patch"].as_mapping()
    per_region = {rid: {"threshold": patch_t[rid], **ev.per_region[rid].as_dict(),
                        "ms_per_patch": ev.timing.ms_per_patch} for rid in REGION_IDS}
    return {
        "convention": CONVENTION,
        "profile": cal.profile, "patch_size": cal.patch_size, "recipe_id": cal.recipe_id, "score": cal.score,
        "recipe_digest": cal.recipe_digest, "training_data_digest": cal.training_data_digest,
        "kit": ev.kit,
        "table1_per_region": {**per_region, "vial": ev.per_vial.as_dict()},
        "table2_per_strip": {"thresholds": cal.thresholds["strip"].as_mapping(), **ev.per_strip.as_dict(),
                             "ms_per_acquisition": ev.timing.ms_per_acquisition_mean},
        "table3_per_run": {"thresholds": cal.thresholds["run"].as_mapping(), **ev.per_run.as_dict(),
                           "run_policy": {"k": cal.run_policy.k, "n": cal.run_policy.n}},
        "serving": {"threshold_set": cal.serving, **ev.serving},
        "roc": {name: _roc_json(curve) for name, curve in ev.roc.items()},
        "strip_score": ("max over patches of score / threshold of the patch's region (strip thresholds)" if cal.score == "phi"
                        else "max over patches of score - threshold of the patch's region (strip thresholds)"),
        "strip_auroc_max_phi": None if np.isnan(ev.strip_auroc_max_phi) else ev.strip_auroc_max_phi,
        "timing": {"runtime": ev.timing.runtime, "ms_per_patch": ev.timing.ms_per_patch,
                   "ms_per_acquisition_mean": ev.timing.ms_per_acquisition_mean,
                   "ms_per_acquisition_p99": ev.timing.ms_per_acquisition_p99, "batches": ev.timing.batches},
        "paper": paper.as_dict(),
        "qualification": ev.qualification,
    }


def _ci(interval: list[float] | None) -> str:
    return "" if interval is None else f" ({interval[0]:.3f}-{interval[1]:.3f})"


def _row(c: DecisionCounts) -> str:
    """accuracy | good accepted | defects rejected | n good | n defective, each rate with its 95 % Wilson CI."""
    d = c.as_dict()
    return (f"{_f(c.accuracy)}{_ci(d['accuracy_ci95'])} | {_f(c.good_accepted_rate)}{_ci(d['good_accepted_ci95'])} | "
            f"{_f(c.defects_rejected_rate)}{_ci(d['defects_rejected_ci95'])} | {c.n_good} | {c.n_defective}")


def report_markdown(ev: Evaluation, title: str) -> str:
    cal, t = ev.calibration, ev.timing
    thr = {name: cal.thresholds[name].as_mapping() for name in ("patch", "strip", "run")}
    head = ("| accuracy | good accepted (paper TPR) | defects rejected (paper TNR) | n good | n defective |")
    lines = [
        f"# {title}", "",
        f"Profile `{cal.profile}` ({cal.patch_size}x{cal.patch_size} patches), recipe `{cal.recipe_id}`, "
        f"training data `{cal.training_data_digest}`. Score: `{cal.score}`; serving thresholds: `{cal.serving}`.",
        f"Held-out kit: {ev.kit['products']} products ({ev.kit['defective_products']} defective), "
        f"{ev.kit['acquisitions']} acquisitions, {ev.kit['patches']} patches. "
        f"Paper kit: {paper.KIT['good_products']} good and {paper.KIT['defective_products']} defective products.",
        "", f"_{CONVENTION}_", "",
        "Accuracies and rates are followed by their 95 % Wilson interval.", "",
        "## Table 1 - per region, patch level (`patch` thresholds)", "",
        "| region | threshold " + head + " ms/patch | paper threshold | paper accuracy | paper TPR | paper TNR | paper ms/patch |",
        "|---" * 13 + "|",
    ]
    for rid in REGION_IDS:
        p = paper.TABLE1_PER_REGION[rid]
        lines.append(f"| {rid} | {thr['patch'][rid]:.6f} | {_row(ev.per_region[rid])} | {_f(t.ms_per_patch)} | "
                     f"{p['threshold']:.6f} | {p['accuracy']:.4f} | {p['good_accepted_rate']:.4f} | "
                     f"{p['defects_rejected_rate']:.4f} | {p['ms_per_patch']:.4f} |")
    pv = paper.TABLE1_VIAL
    lines += [f"| vial | - | {_row(ev.per_vial)} | - | - | {pv['accuracy']:.4f} | {pv['good_accepted_rate']:.4f} | "
              f"{pv['defects_rejected_rate']:.4f} | - |", "",
              "A vial image (the 4 region patches of one vial in one frame) is rejected when any of them is over.", ""]
    for name, table, counts, ref in (("Table 2 - per strip, eq. 13 (`strip` thresholds)", "strip", ev.per_strip,
                                      paper.TABLE2_PER_STRIP),
                                     (f"Table 3 - per run, {cal.run_policy.k} of {cal.run_policy.n} runs "
                                      "(`run` thresholds)", "run", ev.per_run, paper.TABLE3_PER_RUN)):
        lines += [f"## {name}", "", "| | " + " | ".join(REGION_IDS) + " " + head, "|---" * 10 + "|",
                  "| ours | " + " | ".join(f"{thr[table][r]:.6f}" for r in REGION_IDS) + f" | {_row(counts)} |",
                  "| paper | " + " | ".join(f"{ref['thresholds'][r]:.6f}" for r in REGION_IDS)
                  + f" | {ref['accuracy']:.4f} | {ref['good_accepted_rate']:.4f} | "
                  f"{ref['defects_rejected_rate']:.4f} | - | - |", ""]
        if table == "run" and ev.kit.get("min_runs_per_product", cal.run_policy.n) < cal.run_policy.k:
            lines += [f"**Warning:** some products have only {ev.kit['min_runs_per_product']} runs, fewer than "
                      f"k = {cal.run_policy.k}: they can never count as correctly classified. Acquire each "
                      f"product {cal.run_policy.n} times for Table 3 to mean what the paper's does.", ""]
    s = ev.serving
    lines += [
        f"## Serving thresholds (`{cal.serving}` set) at every level", "",
        "| level | accuracy | good accepted | defects rejected |", "|---|---|---|---|",
        *[f"| patch {rid} | {_f(s['patch'][rid]['accuracy'])} | {_f(s['patch'][rid]['good_accepted_rate'])} | "
          f"{_f(s['patch'][rid]['defects_rejected_rate'])} |" for rid in REGION_IDS],
        *[f"| {lvl} | {_f(s[lvl]['accuracy'])} | {_f(s[lvl]['good_accepted_rate'])} | "
          f"{_f(s[lvl]['defects_rejected_rate'])} |" for lvl in ("strip", "run")], "",
        "## ROC (defects = class to detect)", "",
        "| curve | AUROC |", "|---|---|",
        *[f"| patch {rid} | {_f(ev.roc[rid].auroc)} |" for rid in REGION_IDS],
        f"| strip, max(score {'/' if cal.score == 'phi' else '-'} region threshold) | {_f(ev.roc['strip'].auroc)} |",
        f"| strip, max(score) as eq. 13 | {_f(ev.strip_auroc_max_phi)} |", "",
        f"![ROC]({ROC_PNG_FILENAME})", "",
        "## Inference time", "",
        f"Runtime: {t.runtime}. Mean {_f(t.ms_per_patch)} ms per patch (time per 60-patch batch / 60), "
        f"{_f(t.ms_per_acquisition_mean, 2)} ms per acquisition (p99 {_f(t.ms_per_acquisition_p99, 2)} ms) "
        f"over {t.batches} batches, against a 500 ms slot. Paper: {paper.TABLE1_PER_REGION['R0']['ms_per_patch']} "
        f"ms per patch on {paper.PAPER_HARDWARE}.", "",
    ]
    q = ev.qualification
    if q:
        lines += qualification_markdown(q.get("detection_by_kind_and_severity", []), q["false_rejects_by_region"],
                                        q.get("scores_compared", {}), cal.score)
    return "\n".join(lines)


def plot_roc(ev: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_patch, ax_strip) = plt.subplots(1, 2, figsize=(10, 4.6))
    for rid in REGION_IDS:
        c = ev.roc[rid]
        ax_patch.plot(c.false_reject_rate, c.detection_rate, label=f"{rid} (AUROC {_f(c.auroc)})")
    c = ev.roc["strip"]
    ax_strip.plot(c.false_reject_rate, c.detection_rate, label=f"max phi/threshold (AUROC {_f(c.auroc)})")
    ax_strip.plot([1 - ev.per_strip.good_accepted_rate], [ev.per_strip.defects_rejected_rate], "o",
                  label="strip thresholds (eq. 13)")
    for ax, title in ((ax_patch, "Patch level, per region"), (ax_strip, "Strip level")):
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(title=title, xlabel="good units rejected (false-reject rate)",
               ylabel="defects rejected (detection rate)", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(ev: Evaluation, directory: Path, title: str = "vialguard evaluation") -> dict[str, Path]:
    """Write report.md, report.json and roc.png; returns {file name: path} for export_version."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {REPORT_MD_FILENAME: directory / REPORT_MD_FILENAME,
             REPORT_JSON_FILENAME: directory / REPORT_JSON_FILENAME,
             ROC_PNG_FILENAME: directory / ROC_PNG_FILENAME}
    files[REPORT_JSON_FILENAME].write_text(json.dumps(_clean(report_json(ev)), allow_nan=False, indent=2, sort_keys=True) + "\n")
    files[REPORT_MD_FILENAME].write_text(report_markdown(ev, title))
    plot_roc(ev, files[ROC_PNG_FILENAME])
    return files
