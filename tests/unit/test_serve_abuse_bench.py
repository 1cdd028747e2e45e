"""The abuse benchmark, briefly, on the tiny model saved to disk (hostile clients in their own process)."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.bench.load import AbuseBenchConfig, run_abuse_bench
from eco_unlearn.errors import EcoUnlearnError

pytestmark = pytest.mark.hostile


def test_abuse_bench_measures_both_modes_and_loses_no_audit_line(saved_model_dir, model, tmp_path):
    from unit_helpers import make_guard

    make_guard(model).save(tmp_path / "guard")
    config = AbuseBenchConfig(str(saved_model_dir), str(tmp_path / "guard"), clients=2, duration_s=4.0, max_tokens=3,
                              rounds=1, hostile=("huge_chat", "token_bomb", "abandoned_stream"))
    report = run_abuse_bench(config)
    alone, abused = report.rows
    assert (alone.mode, abused.mode) == ("alone", "under_abuse") and alone.hostile_requests == 0
    for row in report.rows:
        assert row.requests > 0 and row.errors == 0 and row.lost_audit_lines == 0
    assert abused.hostile_statuses["huge_chat"] == {"400": abused.hostile_statuses["huge_chat"]["400"]}
    assert set(abused.hostile_statuses["token_bomb"]) == {"400"} and abused.hostile_requests > 0
    assert report.p99_ratio == abused.latency_p99_s / alone.latency_p99_s
    report.save(tmp_path / "abuse.json")
    assert json.loads((tmp_path / "abuse.json").read_text())["benchmark"] == "serve-abuse"


@pytest.mark.parametrize("kwargs", [{"hostile": ("nuke",)}, {"hostile": ()}, {"clients": 0}, {"duration_s": 0}])
def test_abuse_bench_config_validation(kwargs):
    with pytest.raises(EcoUnlearnError):
        AbuseBenchConfig(**kwargs)
