"""Small helpers every benchmark shares: a fixed-width table of result rows and a nearest-rank percentile."""

from __future__ import annotations

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


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
