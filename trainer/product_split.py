"""Train/validation split by product, never by patch.

Patches of one strip (ten runs x 18 images x 20 patches) are near copies of
each other; splitting by patch would put the same strip on both sides and make
the validation loss meaningless. Products are ranked by a seeded hash of their
id, and the first ``ceil(fraction * n)`` go to validation: the assignment does
not depend on manifest order, is stable across re-ingestions, and leaves at
least one product on each side whenever there are two or more products and the
fraction is above zero.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


def product_rank_key(product_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{product_id}".encode()).hexdigest()


def split_products(product_ids: Iterable[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Map each distinct product id to ``"train"`` or ``"validation"``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {val_fraction}")
    products = sorted(set(product_ids), key=lambda p: product_rank_key(p, seed))
    n_val = math.ceil(val_fraction * len(products)) if val_fraction > 0 else 0
    if len(products) >= 2:
        n_val = min(n_val, len(products) - 1)
    else:
        n_val = 0
    return {p: ("validation" if i < n_val else "train") for i, p in enumerate(products)}
