"""The recipe: the geometry of one product on one inspection station.

A recipe says where each vial and each of its 4 logical regions lies in a camera
frame, how many frames an acquisition has, which of them are inspected and the
patch size the model sees. It is validated on load so that a typo in a field
stops a service at start-up with the field's name, not at the first strip.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vialguard.errors import RecipeError

REGION_IDS: tuple[str, ...] = ("R0", "R1", "R2", "R3")
DEFAULT_RECIPE_ID = "bfs5-10ml"


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Region:
    """One logical region of a vial, relative to the vial's origin."""

    id: str
    name: str
    rect: Rect


@dataclass(frozen=True)
class Recipe:
    """Validated strip geometry. Build it with :func:`load_recipe` or :func:`parse_recipe`."""

    id: str
    description: str
    frame_width: int
    frame_height: int
    bit_depth: int
    frames_per_acquisition: int
    inspected_frames: tuple[int, ...]
    patch_size: int
    vials: tuple[tuple[int, int], ...]
    regions: tuple[Region, ...]

    @property
    def patches_per_frame(self) -> int:
        return len(self.vials) * len(self.regions)

    @property
    def patches_per_acquisition(self) -> int:
        return len(self.inspected_frames) * self.patches_per_frame

    def region_rect(self, vial: int, region: int) -> Rect:
        """The region's rectangle in frame coordinates."""
        vx, vy = self.vials[vial]
        r = self.regions[region].rect
        return Rect(vx + r.x, vy + r.y, r.width, r.height)

    def digest(self) -> str:
        """A stable sha256 of the geometry, stored beside every model version."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _require(data: dict[str, Any], field: str, kind: type, where: str = "") -> Any:
    name = f"{where}{field}"
    if field not in data:
        raise RecipeError(name, "is missing")
    value = data[field]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecipeError(name, f"must be an integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise RecipeError(name, f"must be a {kind.__name__}, got {value!r}")
    return value


def _positive(value: int, field: str) -> int:
    if value <= 0:
        raise RecipeError(field, f"must be positive, got {value}")
    return value


def _parse_rect(data: dict[str, Any], where: str) -> Rect:
    x = _require(data, "x", int, where)
    y = _require(data, "y", int, where)
    width = _positive(_require(data, "width", int, where), f"{where}width")
    height = _positive(_require(data, "height", int, where), f"{where}height")
    if x < 0 or y < 0:
        raise RecipeError(f"{where}x/y", f"must not be negative, got ({x}, {y})")
    return Rect(x, y, width, height)


def parse_recipe(data: Any) -> Recipe:
    """Validate a recipe mapping (as read from YAML) and build a :class:`Recipe`."""
    if not isinstance(data, dict):
        raise RecipeError("<root>", "the recipe must be a mapping of fields")
    recipe_id = _require(data, "id", str)
    frame = _require(data, "frame", dict)
    width = _positive(_require(frame, "width", int, "frame."), "frame.width")
    height = _positive(_require(frame, "height", int, "frame."), "frame.height")
    bit_depth = _require(frame, "bit_depth", int, "frame.")
    if bit_depth not in (8, 16):
        raise RecipeError("frame.bit_depth", f"must be 8 or 16, got {bit_depth}")
    n_frames = _positive(_require(data, "frames_per_acquisition", int), "frames_per_acquisition")
    inspected = _require(data, "inspected_frames", list)
    if not inspected:
        raise RecipeError("inspected_frames", "must name at least one frame")
    for i, index in enumerate(inspected):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_frames:
            raise RecipeError(f"inspected_frames[{i}]", f"must be a frame index in 0..{n_frames - 1}, got {index!r}")
    if len(set(inspected)) != len(inspected):
        raise RecipeError("inspected_frames", f"has a repeated frame index: {inspected}")
    patch_size = _positive(_require(data, "patch_size", int), "patch_size")
    if patch_size % 16:
        raise RecipeError("patch_size", f"must be a multiple of 16 (4 halvings in the encoder), got {patch_size}")

    vial_list = _require(data, "vials", list)
    if not vial_list:
        raise RecipeError("vials", "must list at least one vial")
    vials = []
    for i, vial in enumerate(vial_list):
        where = f"vials[{i}]."
        if not isinstance(vial, dict):
            raise RecipeError(f"vials[{i}]", "must be a mapping with x and y")
        vials.append((_require(vial, "x", int, where), _require(vial, "y", int, where)))

    region_list = _require(data, "regions", list)
    ids = [r.get("id") if isinstance(r, dict) else None for r in region_list]
    if tuple(ids) != REGION_IDS:
        raise RecipeError("regions", f"must list the regions {list(REGION_IDS)} in this order, got {ids}")
    regions = tuple(
        Region(id=str(r["id"]), name=str(r.get("name", r["id"])), rect=_parse_rect(r, f"regions[{i}]."))
        for i, r in enumerate(region_list)
    )
    recipe = Recipe(
        id=recipe_id,
        description=str(data.get("description", "")),
        frame_width=width,
        frame_height=height,
        bit_depth=bit_depth,
        frames_per_acquisition=n_frames,
        inspected_frames=tuple(inspected),
        patch_size=patch_size,
        vials=tuple(vials),
        regions=regions,
    )
    for v in range(len(vials)):
        for r in range(len(regions)):
            rect = recipe.region_rect(v, r)
            if rect.x + rect.width > width or rect.y + rect.height > height:
                raise RecipeError(
                    f"vials[{v}] + regions[{r}]",
                    f"rectangle {rect} reaches outside the {width}x{height} frame",
                )
    return recipe


def load_recipe(source: str | Path = DEFAULT_RECIPE_ID) -> Recipe:
    """Load a recipe from a YAML path, or by id from the recipes shipped in the package."""
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise RecipeError("<file>", f"no recipe file at {path}")
        text = path.read_text()
    else:
        shipped = resources.files("vialguard") / "recipes" / f"{source}.yaml"
        if not shipped.is_file():
            raise RecipeError("id", f"no shipped recipe named '{source}' (and no file of that name)")
        text = shipped.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError("<file>", f"is not valid YAML: {exc}") from exc
    return parse_recipe(data)
