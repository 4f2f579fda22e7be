"""Labels of a validation kit (product -> good/defective), for the product view's "correctly classified".

Verdicts carry no label: the line does not know whether a product is good. A
validation run knows: it writes one JSON object per line, {"product_id": ...,
"label": "good"|"defective"}, to a file the HMI is given (the demo writes one as it
pushes its kit). Re-read whenever the file changes, so labels can arrive as the kit runs.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class KitLabels:
    def __init__(self, path: Path | None) -> None:
        self._path = Path(path) if path and str(path) not in ("", ".") else None
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._labels: dict[str, str] = {}

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self) -> dict[str, str]:
        if self._path is None:
            return {}
        try:
            stat = self._path.stat()
        except OSError:
            return {}
        with self._lock:
            if self._stamp != (stat.st_mtime, stat.st_size):
                self._labels = read_labels(self._path)
                self._stamp = (stat.st_mtime, stat.st_size)
            return dict(self._labels)


def read_labels(path: Path) -> dict[str, str]:
    labels: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            labels[str(item["product_id"])] = str(item["label"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is not {\"product_id\": ..., \"label\": ...}: skipped", path, number)
    return labels
