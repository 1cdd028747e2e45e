"""The server load benchmark, briefly, on the tiny model saved to disk."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.bench.load.benchmark import ServeBenchConfig, run_serve_bench
from eco_unlearn.errors import EcoUnlearnError


def test_serve_bench_counts_requests_errors_and_audit_lines(saved_model_dir, tmp_path):
    # each client sends at least one request a round (clients 0 and 2 start flagged, client 1 not), so every
    # mode has flagged and unflagged requests however loaded the machine
    config = ServeBenchConfig(str(saved_model_dir), clients=3, duration_s=1.0, max_tokens=3, rounds=2)
    report = run_serve_bench(config)
    assert [row.mode for row in report.rows] == ["unguarded", "guarded", "guarded-nobatch"]
    for row in report.rows:
        assert row.requests > 0 and row.errors == 0 and row.lost_audit_lines == 0
        assert row.audit_lines == row.requests and len(row.latencies_s) == row.requests
        assert 0 < row.latency_p50_s <= row.latency_p99_s and row.requests_per_s > 0
        assert 0 < row.flagged_requests < row.requests
    assert report.rows[2].mean_batch_rows == 1.0
    report.save(tmp_path / "serve.json")
    saved = json.loads((tmp_path / "serve.json").read_text())
    assert saved["benchmark"] == "serve" and saved["environment"]["model_fingerprint"]["hidden_size"] == 32


def test_a_window_shorter_than_a_request_still_gets_one_request_per_client(saved_model_dir):
    config = ServeBenchConfig(str(saved_model_dir), clients=3, duration_s=1e-6, max_tokens=2, rounds=1, modes=("guarded",))
    (row,) = run_serve_bench(config).rows
    assert (row.requests, row.flagged_requests, row.errors, row.lost_audit_lines) == (3, 2, 0, 0)


@pytest.mark.parametrize("kwargs", [{"modes": ("fast",)}, {"modes": ()}, {"clients": 0}, {"rounds": 0}])
def test_serve_bench_config_validation(kwargs):
    with pytest.raises(EcoUnlearnError):
        ServeBenchConfig(**kwargs)


def test_build_backend_loads_the_guard_folder_then_the_model(saved_model_dir, model, tmp_path):
    """The one library function the CLI's serve command uses to build its backend."""
    from eco_unlearn import GuardError
    from eco_unlearn.serve import LocalBackend, ServeConfig, VLLMGateway, build_backend
    from unit_helpers import make_guard

    make_guard(model).save(tmp_path / "guard")
    config = ServeConfig(model_id="tiny", guard_path=str(tmp_path / "guard"))
    local = build_backend(str(saved_model_dir), config, truncation="left")
    assert isinstance(local, LocalBackend) and local.config is config and local.truncation == "left"
    assert [t.name for t in local.guards.current.guard.targets] == ["hp"]
    assert local.guards.current.path == config.guard_path
    gateway = build_backend(str(saved_model_dir), config, backend="vllm", vllm_url="http://127.0.0.1:1",
                            vllm_model="up")
    assert isinstance(gateway, VLLMGateway) and gateway.config is config and gateway.upstream_model == "up"
    assert build_backend(str(saved_model_dir), ServeConfig()).guards.current.guard is None
    with pytest.raises(GuardError, match="no guard folder"):  # the guard loads (and fails) before the model
        build_backend("/nonexistent/model", ServeConfig(guard_path=str(tmp_path / "missing")))
    with pytest.raises(EcoUnlearnError, match="--vllm-url"):
        build_backend(str(saved_model_dir), config, backend="vllm")
    with pytest.raises(EcoUnlearnError, match="not supported by the vllm backend"):
        build_backend(str(saved_model_dir), config, backend="vllm", vllm_url="http://x", truncation="left")


def test_cli_resolves_the_guard_path_in_one_place(tmp_path, monkeypatch, model):
    from eco_unlearn import GuardError
    from eco_unlearn.cli.console import guard_path as _guard_path, load_guard as _load_guard
    from eco_unlearn.demo import demo_guard_path
    from unit_helpers import make_guard

    monkeypatch.setenv("ECO_UNLEARN_CACHE", str(tmp_path))
    assert _guard_path(None, "tiny") is None and str(_guard_path("guards/x", "tiny")) == "guards/x"
    with pytest.raises(GuardError, match="no demo guard for tiny"):
        _guard_path("demo", "tiny")
    make_guard(model).save(demo_guard_path("tiny"))
    assert _guard_path("demo", "tiny") == demo_guard_path("tiny")
    assert _load_guard("demo", "tiny").targets[0].name == "hp"
