"""Files the Triton Python backend needs inside each `inspector` version directory.

Triton's Python backend loads ``<model>/<version>/model.py`` (or the config's
``default_model_filename``, still inside the version directory); it cannot point
at one shared adapter. So the exporter writes these files into every version it
publishes: ``publish_version(repo, write)`` with ``write`` also writing
``triton_backend_files()``. A version then carries the adapter it was validated
with, and appears whole (DESIGN invariant 4). The GPU config ignores model.py.
"""
from __future__ import annotations

from importlib import resources

ADAPTER_FILENAME = "model.py"


def triton_backend_files() -> dict[str, bytes]:
    """File name -> content to write into a new version directory, beside model.onnx."""
    adapter = resources.files(__package__).joinpath(ADAPTER_FILENAME).read_bytes()
    return {ADAPTER_FILENAME: adapter}
