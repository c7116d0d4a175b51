"""Loss curves: CSV appended per step, truncated on resume, plotted to a PNG."""

from __future__ import annotations

import math
from pathlib import Path

from stepaudio.train.curves import CurveLog, CurveRow, plot, smooth


def test_csv_appends_reads_back_and_truncates(tmp_path: Path) -> None:
    log = CurveLog(tmp_path)
    for step in range(1, 6):
        log.append(CurveRow(step, 0, 1e-3, 5.0 / step, 0.5, 100, step * 0.1, 2.0 if step == 5 else math.nan))
    rows = log.read()
    assert [r.step for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1].loss == 2.5 and math.isnan(rows[0].eval_loss) and rows[4].eval_loss == 2.0
    log.truncate_after(3)
    log.append(CurveRow(4, 0, 1e-3, 9.0, 0.5, 100, 1.0))
    assert [(r.step, r.loss) for r in log.read()] == [(1, 5.0), (2, 2.5), (3, 5.0 / 3), (4, 9.0)]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    rows = [CurveRow(0, 0, 0.0, math.nan, math.nan, 0, 0.0, 6.0)]
    rows += [CurveRow(s, 0, 1e-3, 6.0 / s, 1.0, 10, s, 3.0 if s == 10 else math.nan) for s in range(1, 11)]
    path = plot(rows, tmp_path / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smooth_is_a_trailing_mean() -> None:
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
