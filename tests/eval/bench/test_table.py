"""The benchmarks' shared table and report helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepaudio.eval.bench.table import format_rows, percentile, report_rows

COLUMNS = (("name", "{}"), ("seconds", "{:.2f}"), ("threads", "{}"))


def test_format_rows_right_aligns_and_leaves_missing_cells_blank() -> None:
    table = format_rows([{"name": "flow", "seconds": 1.5}, {"name": "hift-long", "threads": 2}], COLUMNS)
    assert table.splitlines() == ["     name  seconds  threads", "     flow     1.50         ",
                                  "hift-long                 2"]


def test_report_rows_stamps_threads_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"name": "flow", "seconds": 0.25}]
    out = tmp_path / "rows.json"
    report_rows(rows, COLUMNS, 3, str(out))
    assert json.loads(out.read_text()) == [{"name": "flow", "seconds": 0.25, "threads": 3}]
    assert capsys.readouterr().out.splitlines()[1].split() == ["flow", "0.25", "3"]
    report_rows(rows, COLUMNS, 1, None)  # no JSON asked: only the table
    assert "1" in capsys.readouterr().out.splitlines()[1].split()


def test_percentile_is_nearest_rank() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0
