"""Small helpers every benchmark shares: a fixed-width table of result rows, printing it with its JSON copy,
and a nearest-rank percentile."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

Columns = Sequence[tuple[str, str]]  # (row key, format spec)


def format_rows(rows: Sequence[dict[str, Any]], columns: Columns) -> str:
    """Right-aligned table with one header line; a cell whose key a row lacks stays blank."""
    cells = [[name for name, _ in columns]]
    for row in rows:
        cells.append([fmt.format(row[name]) if name in row else "" for name, fmt in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells)


def report_rows(rows: list[dict[str, Any]], columns: Columns, threads: int, json_path: str | None) -> None:
    """Stamp each row with the thread count it ran on, print the table, and write the rows as JSON when asked."""
    for row in rows:
        row["threads"] = threads
    print(format_rows(rows, columns))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(rows, handle, indent=2)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
