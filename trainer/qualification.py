"""What a qualification engineer signs beside Tables 1-3: detection by defect kind and
severity, false rejects by region, and the scores compared.

- Detection rate per defect kind x severity band, per acquisition (eq. 13 with the
  serving thresholds) and per product (the k-of-n run policy), each with its 95 %
  Wilson interval. A product with two defects counts under each of them (its
  detection is the product's, whichever defect was seen).
- False-reject rate per region: the share of good acquisitions in which the region
  had a patch over its threshold, so the engineer sees which region stops good strips.
- Severity bands are the kit's own ground truth (the simulator's severity, or what an
  importer records): the lightest band shows plainly what the images do not show.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.calibrate import acquisition_table
from trainer.metrics import wilson_interval
from trainer.scoring import ScoredSet
from vialguard.decision import RegionThresholds, RunPolicy
from vialguard.recipe import REGION_IDS

SEVERITY_BANDS: tuple[tuple[float, float, str], ...] = ((0.0, 0.2, "< 0.2"), (0.2, 0.5, "0.2-0.5"),
                                                        (0.5, 1.0 + 1e-9, ">= 0.5"))


@dataclass(frozen=True)
class DefectTruth:
    """One defect of a product, as the kit's manifest records it."""

    kind: str
    region: int
    severity: float


def kit_defects(dataset_root: str | Path) -> dict[str, list[DefectTruth]]:
    """Product id -> its defects, from a kit's manifest (the first run of each product)."""
    from vialguard.dataset import iter_acquisitions

    out: dict[str, list[DefectTruth]] = {}
    for record in iter_acquisitions(dataset_root):
        out.setdefault(record.product_id, [DefectTruth(d.kind, d.region, d.severity) for d in record.defects])
    return out


def severity_band(severity: float) -> str:
    for lo, hi, name in SEVERITY_BANDS:
        if lo <= severity < hi:
            return name
    return SEVERITY_BANDS[-1][2]


def _rate(hits: int, n: int) -> dict[str, Any]:
    return {"n": n, "detected": hits, "rate": hits / n if n else None, "ci95": wilson_interval(hits, n)}


def detection_table(scored: ScoredSet, thresholds: RegionThresholds, policy: RunPolicy,
                    defects: Mapping[str, Sequence[DefectTruth]]) -> list[dict[str, Any]]:
    """Rows {kind, band, acquisitions: rate, products: rate}, sorted by kind then band."""
    table = acquisition_table(scored)
    rejected = table.rejected(thresholds.as_array())
    product_runs = np.bincount(table.product, minlength=table.product_ids.size)
    product_rejects = np.bincount(table.product, weights=rejected, minlength=table.product_ids.size)
    acq_by_product: dict[int, list[int]] = {}
    for a, p in enumerate(table.product):
        acq_by_product.setdefault(int(p), []).append(a)
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for p, pid in enumerate(table.product_ids):
        if not table.defective[acq_by_product[p][0]]:
            continue
        for d in defects.get(str(pid), ()):
            cell = cells.setdefault((d.kind, severity_band(d.severity)), {"acq": 0, "acq_hit": 0, "prod": 0,
                                                                          "prod_hit": 0})
            cell["acq"] += int(product_runs[p])
            cell["acq_hit"] += int(product_rejects[p])
            cell["prod"] += 1
            cell["prod_hit"] += int(policy.correctly_classified(False, int(product_runs[p] - product_rejects[p]),
                                                                int(product_rejects[p])))
    order = {name: i for i, (_, _, name) in enumerate(SEVERITY_BANDS)}
    return [{"kind": kind, "severity": band, "acquisitions": _rate(c["acq_hit"], c["acq"]),
             "products": _rate(c["prod_hit"], c["prod"])}
            for (kind, band), c in sorted(cells.items(), key=lambda kv: (kv[0][0], order[kv[0][1]]))]


def false_rejects_by_region(scored: ScoredSet, thresholds: RegionThresholds) -> dict[str, dict[str, Any]]:
    """Per region (and 'strip'): good acquisitions with a patch of that region over its threshold."""
    table = acquisition_table(scored)
    good = ~table.defective
    over = table.region_max > thresholds.as_array()[None, :]
    n = int(good.sum())
    out = {rid: _rate(int(over[good, r].sum()), n) for r, rid in enumerate(REGION_IDS)}
    out["strip"] = _rate(int(over[good].any(axis=1).sum()), n)
    return out


def _pct(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "-"
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f} % ({rate['detected']}/{rate['n']}; {100 * lo:.0f}-{100 * hi:.0f})"


def qualification_markdown(detection: list[dict[str, Any]], false_rejects: dict[str, dict[str, Any]],
                           comparison: Mapping[str, Mapping[str, Any]], served: str) -> list[str]:
    """Markdown sections: detection by kind x severity, false rejects by region, scores compared."""
    lines = ["## Detection by defect kind and severity (serving thresholds)", "",
             "Rate (detected/n; 95 % Wilson interval). Acquisitions: eq. 13 per run; products: the run policy.", "",
             "| defect | severity | acquisitions rejected | products rejected |", "|---|---|---|---|"]
    lines += [f"| {row['kind']} | {row['severity']} | {_pct(row['acquisitions'])} | {_pct(row['products'])} |"
              for row in detection]
    lines += ["", "## False rejects of good acquisitions, by region (serving thresholds)", "",
              "| region | good acquisitions rejected |", "|---|---|"]
    lines += [f"| {name} | {_pct(rate)} |" for name, rate in false_rejects.items()]
    if comparison:
        lines += ["", "## Scores compared on this kit (each with its own thresholds from the calibration kit)", "",
                  "| score | strip AUROC | strip accuracy (95 % CI) | run accuracy (95 % CI) | good products "
                  "accepted | serving set |", "|---|---|---|---|---|---|"]
        for kind, row in comparison.items():
            mark = " (served)" if kind == served else ""
            lines.append(f"| {kind}{mark} | {row['strip_auroc']:.4f} | {_acc(row['strip'])} | {_acc(row['run'])} | "
                         f"{_share(row['run'])} | {row['serving']} |")
    return lines + [""]


def _acc(counts: Mapping[str, Any]) -> str:
    lo, hi = counts["accuracy_ci95"] or (float("nan"), float("nan"))
    return f"{counts['accuracy']:.4f} ({lo:.3f}-{hi:.3f})"


def _share(counts: Mapping[str, Any]) -> str:
    return f"{counts['good_accepted']}/{counts['n_good']}"
