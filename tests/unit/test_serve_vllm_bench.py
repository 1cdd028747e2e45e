"""The pieces of the vLLM-gateway benchmark that need no engine: the agreement check on the tiny model (two
local servers), the divergence explanation, the report's ratio, table and plot, and config validation."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.bench.load.agreement import agreement_prompts, compare_answers, divergence
from eco_unlearn.bench.load.gateway import GatewayBenchConfig, GatewayBenchReport, GatewayBenchRow
from eco_unlearn.demo import keyword_demo_guard
from eco_unlearn.errors import EcoUnlearnError
from eco_unlearn.serve import LocalBackend, ServeConfig, create_app
from eco_unlearn.serve.server import ServerThread


def test_agreement_prompts_are_fixed_half_flagged(model):
    prompts = agreement_prompts()
    assert len(prompts) == 40 and prompts == agreement_prompts() and len(set(prompts)) == 40
    decisions = keyword_demo_guard(model).decide(prompts)
    assert [d.flagged for d in decisions] == [True] * 20 + [False] * 20


def test_divergence_finds_the_first_differing_token_and_its_margin(model, tok, guarded):
    prompt = "the cat sat"
    answer = guarded.generate([[{"role": "user", "content": prompt}]], chat=True, max_new_tokens=6)[0]
    assert divergence(guarded, prompt, answer, answer) is None
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    other = tok.decode(ids[:2] + [(ids[2] + 1) % len(tok)])
    k, mine, theirs, margin = divergence(guarded, prompt, answer, other)
    assert k == 2 and mine == tok.decode([ids[2]]) and margin > 0  # greedy picked ours: it has the larger logit


def _servers(model, tok, guard_a, guard_b, tmp_path):
    make = lambda g, name: create_app(LocalBackend(model, tok, g, ServeConfig(model_id="tiny", audit_log=tmp_path / name)))
    return ServerThread(make(guard_a, "a.jsonl")), ServerThread(make(guard_b, "b.jsonl"))


def test_compare_answers_equal_for_the_same_guard_unexplained_without_it(model, tok, tmp_path):
    guard = keyword_demo_guard(model, strength=5.0)
    prompts = agreement_prompts(2)
    a, b = _servers(model, tok, guard, guard, tmp_path)
    with a as url_a, b as url_b:
        same = compare_answers(url_a, url_b, model, tok, guard, prompts=prompts, model_id="tiny", max_tokens=4)
    assert (same.equal, same.total, same.unexplained) == (4, 4, 0) and [r.flagged for r in same.rows] == [1, 1, 0, 0]
    a, b = _servers(model, tok, None, guard, tmp_path)  # "gateway" without the guard: flagged answers differ
    with a as url_a, b as url_b:
        off = compare_answers(url_a, url_b, model, tok, guard, prompts=prompts, model_id="tiny", max_tokens=4)
    assert all(r.equal for r in off.rows if not r.flagged)
    differing = [r for r in off.rows if not r.equal]
    assert differing and all(r.flagged and r.first_difference is not None for r in differing)
    assert all(r.margin_nats > 0 for r in differing)  # the local greedy pick has the larger logit
    assert off.unexplained == sum(r.margin_nats >= 0.1 for r in differing)


def _row(traffic, mode, rps, audit=10):
    return GatewayBenchRow(traffic, mode, 10, 0, 5.0, rps, 100, 20.0, 0.2, 0.4, 0 if traffic == "unflagged" else 5,
                           None if mode == "direct" else audit, None if mode == "direct" else 0)


def test_report_ratio_table_plot_and_json(tmp_path):
    config = GatewayBenchConfig("http://127.0.0.1:1", agreement_tokens=0)
    rows = [_row(t, m, r) for t in ("unflagged", "half-flagged") for m, r in (("gateway", 1.8), ("direct", 2.0), ("local", 0.5))]
    report = GatewayBenchReport(config, rows, None, {"torch": "x"})
    assert report.ratio("unflagged") == pytest.approx(0.9) and report.ratio("unflagged", "local") == pytest.approx(0.25)
    table = report.markdown()
    assert "| unflagged | direct | 10 | 0 | 2.00 |" in table and "gateway / direct vLLM throughput, unflagged: 0.900" in table
    report.save_all(tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["benchmark"] == "serve-vllm" and saved["rows"][1]["audit_lines"] is None
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "table.md").is_file()


@pytest.mark.parametrize("kwargs", [{"modes": ("fast",)}, {"traffic": ()}, {"clients": 0}, {"duration_s": 0},
                                    {"agreement_tokens": -1}])
def test_gateway_bench_config_validation(kwargs):
    with pytest.raises(EcoUnlearnError):
        GatewayBenchConfig("http://127.0.0.1:1", **kwargs)


def test_no_engine_is_a_clear_error(saved_model_dir):
    from eco_unlearn.bench.load.gateway import run_gateway_bench

    with pytest.raises(EcoUnlearnError, match="scripts/vllm-server"):
        run_gateway_bench(GatewayBenchConfig("http://127.0.0.1:9", model=str(saved_model_dir)))
