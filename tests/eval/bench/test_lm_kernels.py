from __future__ import annotations

from stepaudio.eval.bench.lm_kernels import kernel_table


def test_every_kernel_runs_and_reports_a_rate() -> None:
    table = kernel_table(64, 128, total_bytes=200_000, repeats=1)
    assert len(table) == 8 and all(rate > 0 for rate in table.values())
