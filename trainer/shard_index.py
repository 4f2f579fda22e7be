"""The index of an ingested patch set: ``index.json`` beside the TFRecord shards.

The index is what the input pipeline opens (never a directory listing), and it
is written last, so a directory with an index is a complete ingestion. It
records where every shard is, how many patches it holds, the patch size and
quantisation, the recipe digest, and the digest of the source dataset — that
digest becomes the ``training_data_digest`` of the model version trained on it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vialguard.errors import VialguardError

INDEX_FILENAME = "index.json"
SCHEMA_VERSION = 1
SPLITS = ("train", "validation")
FRAME_MODES = ("all+rank", "inspected")


class IngestError(VialguardError):
    """A dataset cannot be ingested, or an ingested patch set is missing or damaged."""


@dataclass(frozen=True)
class Shard:
    file: str  # relative to the index's directory
    count: int


@dataclass
class SplitIndex:
    """The shards and statistics of one split (train or validation)."""

    shards: list[Shard] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    acquisitions: int = 0
    patches: int = 0
    # counts[region_id]["good" | "defective"] = number of patches
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class ShardIndex:
    patch_size: int
    bit_depth: int
    frames: str
    compression: str  # "GZIP" or "" (TFRecordDataset's compression_type)
    recipe_id: str
    recipe_digest: str
    source_digest: str
    seed: int
    val_fraction: float
    patches_per_acquisition: int
    splits: dict[str, SplitIndex]
    source: str = ""
    created_utc: str = ""
    seconds: float = 0.0

    def shard_paths(self, directory: Path, split: str | None) -> list[Path]:
        """Absolute shard paths of one split (or of every split when ``split`` is None)."""
        names = SPLITS if split is None else (split,)
        for name in names:
            if name not in self.splits:
                raise IngestError(f"split '{name}' is not in this index; it has {sorted(self.splits)}")
        return [directory / s.file for name in names for s in self.splits[name].shards]

    def count(self, split: str | None) -> int:
        names = SPLITS if split is None else (split,)
        return sum(self.splits[name].patches for name in names if name in self.splits)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShardIndex":
        if data.get("schema") != SCHEMA_VERSION:
            raise IngestError(f"index schema {data.get('schema')!r} is not {SCHEMA_VERSION}; re-run the ingestion")
        try:
            splits = {
                name: SplitIndex(
                    shards=[Shard(**s) for s in split["shards"]],
                    products=list(split["products"]),
                    acquisitions=int(split["acquisitions"]),
                    patches=int(split["patches"]),
                    counts={r: dict(c) for r, c in split["counts"].items()},
                )
                for name, split in data["splits"].items()
            }
            fields = {k: v for k, v in data.items() if k not in ("schema", "splits")}
            return cls(splits=splits, **fields)
        except (KeyError, TypeError) as exc:
            raise IngestError(f"index is malformed ({exc!r}); re-run the ingestion") from exc


def index_path_of(path: str | Path) -> Path:
    """Accept either the index file or the directory that holds it."""
    path = Path(path)
    return path / INDEX_FILENAME if path.is_dir() else path


def load_index(path: str | Path) -> ShardIndex:
    """Read and check an index; every shard it names must exist."""
    path = index_path_of(path)
    if not path.is_file():
        raise IngestError(f"no ingested patch set at {path} (run `vialguard-train ingest` first)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path} is not JSON: {exc}") from exc
    index = ShardIndex.from_json(data)
    missing = [p.name for p in index.shard_paths(path.parent, None) if not p.is_file()]
    if missing:
        raise IngestError(f"{len(missing)} shard(s) named in {path} are missing, e.g. {missing[0]}")
    return index


def save_index(index: ShardIndex, directory: Path) -> Path:
    path = directory / INDEX_FILENAME
    path.write_text(json.dumps(index.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def source_digest(dataset_root: Path, header_name: str = "dataset.json", manifest_name: str = "manifest.jsonl") -> str:
    """sha256 over the dataset header and manifest: what a model version was trained on.

    The frames are named by the manifest and written once, so hashing the two
    small files identifies the dataset without reading gigabytes of PNG.
    """
    digest = hashlib.sha256()
    for name in (header_name, manifest_name):
        path = Path(dataset_root) / name
        if not path.is_file():
            raise IngestError(f"{dataset_root} is not a vialguard dataset: {name} is missing")
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()
