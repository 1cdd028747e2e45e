"""The overhead benchmark's machinery on a tiny saved model (the real figures come from the CLI)."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.bench.overhead.benchmark import OverheadConfig, run_overhead


def test_overhead_report_has_ratios_and_saves_json(saved_model_dir, tmp_path):
    """Every workload gets median timings and a guarded/bare ratio; the report round-trips through JSON."""
    config = OverheadConfig(model=str(saved_model_dir), batch_sizes=(1, 2), new_tokens=3, repeats=2, memory=True)
    seen = []
    report = run_overhead(config, progress=lambda what, done, total: seen.append((done, total)))
    assert [(r.batch_size, r.flagged) for r in report.rows] == [(1, False), (1, True), (2, False), (2, True)]
    for row in report.rows:
        assert len(row.bare_times_s) == len(row.guarded_times_s) == 2
        assert row.latency_ratio == row.guarded_median_s / row.bare_median_s > 0
        assert row.paired_ratio_iqr[0] <= row.paired_ratio_median <= row.paired_ratio_iqr[1]
        assert 0 < row.guard_work_ms and row.guard_work_fraction == pytest.approx(row.guard_work_ms / 1000 / row.bare_median_s)
        assert row.bare_peak_mib > 0 and row.guarded_peak_mib > 0
    assert seen[-1][0] == seen[-1][1]  # progress reaches its total
    report.save(tmp_path / "overhead.json")
    saved = json.loads((tmp_path / "overhead.json").read_text())
    assert saved["benchmark"] == "overhead" and len(saved["rows"]) == 4
    assert saved["environment"]["model_fingerprint"]["hidden_size"] == 32
