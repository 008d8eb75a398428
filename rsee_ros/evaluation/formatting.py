"""Text of the reports that ``rsee eval``, ``rsee bench`` and ``rsee bench-node`` print: numbers,
PASS/MISS verdicts, target lines and fixed-width tables. Pure string work on JSON-ready
reports (NaN already ``None``), no imports beyond the standard library."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Column", "number", "percent", "table", "target_line", "verdict"]


def number(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``-`` when it is no number (None, a bool, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return format(value, spec)


def percent(fraction: Any, spec: str) -> str:
    """A fraction as a percentage (the number only), ``-`` when it is no number."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return "-"
    return format(100 * fraction, spec)


def verdict(passed: bool | None) -> str:
    """``PASS``, ``MISS``, or ``not run`` (None: the check could not be made)."""
    return {True: "PASS", False: "MISS", None: "not run"}[passed]


def target_line(target: Mapping[str, Any]) -> str:
    """One ``{name, target, value, passed}`` target: ``PASS  name: value (target ...)``; a value
    that is a mapping is shown as its ``key value`` pairs."""
    value = target["value"]
    if isinstance(value, Mapping):
        shown = ", ".join(f"{k} {number(v, '.3f')}" for k, v in value.items())
    else:
        shown = number(value, ".3f")
    return (f"{verdict(bool(target['passed']))}  {target['name']}: {shown} "
            f"(target {target['target']})")


@dataclass(frozen=True)
class Column:
    """A table column: its title and width; text columns are left-aligned, numbers right."""

    title: str
    width: int
    text: bool = False

    def cell(self, value: str) -> str:
        return format(value, f"{'<' if self.text else '>'}{self.width}")


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a table: a header, a rule as wide as it, and one line per row of cells."""
    head = " ".join(c.cell(c.title) for c in columns)
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(" ".join(c.cell(v) for c, v in zip(columns, row, strict=True)))
    return lines
