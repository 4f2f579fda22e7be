"""Fixed-width text tables that can be printed one row at a time.

The demo prints each acquisition's verdict as it comes back, so the columns are
fixed up front instead of being sized from the whole table afterwards.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    fmt: str = ""            # format spec applied to the value, e.g. ".4f"
    align: str = ">"         # ">" numbers, "<" text

    def cell(self, value: Any) -> str:
        if value is None:
            text = "-"
        elif isinstance(value, float) and value != value:  # NaN
            text = "nan"
        else:
            text = format(value, self.fmt) if self.fmt else str(value)
        if len(text) > self.width:
            text = text[: self.width - 1] + "~"
        return f"{text:{self.align}{self.width}}"


class Table:
    def __init__(self, columns: Sequence[Column], gap: str = "  ") -> None:
        self.columns = list(columns)
        self.gap = gap

    def header(self) -> str:
        titles = self.gap.join(f"{c.title:{c.align}{c.width}}" for c in self.columns).rstrip()
        rule = self.gap.join("-" * c.width for c in self.columns)
        return f"{titles}\n{rule}"

    def row(self, values: Sequence[Any]) -> str:
        if len(values) != len(self.columns):
            raise ValueError(f"row has {len(values)} values for {len(self.columns)} columns")
        return self.gap.join(c.cell(v) for c, v in zip(self.columns, values)).rstrip()

    def render(self, rows: Sequence[Sequence[Any]]) -> str:
        return "\n".join([self.header(), *(self.row(r) for r in rows)])
