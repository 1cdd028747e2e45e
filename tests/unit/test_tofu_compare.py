"""``run_compare`` end to end on the tiny model and one TOFU author: every method runs, the grid points
are scored without generation, each trained method's best point is fully evaluated, ECO is fitted per
seed, and a second run is served from the cache (no training, no fit)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eco_unlearn.bench.tofu import EcoTofuConfig, TofuEvalConfig, TofuRunConfig, tofu_fit_config
from eco_unlearn.bench.tofu import baselines as baselines_module
from eco_unlearn.bench.tofu import compare as compare_module
from eco_unlearn.bench.tofu import compare_eco as compare_eco_module
from eco_unlearn.bench.tofu.compare import CompareConfig, run_compare
from eco_unlearn.bench.tofu.data import DATA_ENV, TofuDataError
from eco_unlearn.training.sft import FinetuneConfig
from eco_unlearn.training.unlearn import UnlearnConfig
from unit_helpers import build_model

METHODS = ("eco", "ga", "idkdpo", "rmu", "prompt")


@pytest.fixture(scope="module")
def compare_config(tmp_path_factory, tok):
    root = Path(os.environ.get(DATA_ENV, Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (root / "tofu" / "forget01.jsonl").is_file():
        pytest.skip(f"TOFU data not found under {root}")
    base = tmp_path_factory.mktemp("tofu-compare")
    model = build_model(tok, seed=0, context=512)
    model.save_pretrained(base / "model")
    tok.save_pretrained(base / "model")
    run = TofuRunConfig(
        model=str(base / "model"), data_dir=str(root), cache=str(base / "cache"), output=str(base / "out"),
        authors=1, limit=2, finetune=FinetuneConfig(epochs=1), evaluation=TofuEvalConfig(max_new_tokens=3),
        eco=EcoTofuConfig(fit=tofu_fit_config(search__budget=3)), parallel=False,
    )
    grid = {"learning_rate": (1e-3, 1e-2), "epochs": (1,)}
    return CompareConfig(
        run=run, methods=METHODS, seeds=(0, 1), grids={m: grid for m in METHODS},
        unlearn=UnlearnConfig(batch_size=20, dtype="float32"),
    )


@pytest.fixture(scope="module")
def first(compare_config):
    return run_compare(compare_config)


def test_every_method_is_in_the_table_with_its_cost(first, compare_config):
    rows = {r["method"]: r for r in first.table}
    assert list(rows) == ["retain", "target", *METHODS]
    for name in ("ga", "idkdpo", "rmu"):
        entry = first.methods[name]
        assert len(entry["points"]) == 2 and sum(bool(p.get("selected")) for p in entry["points"]) == 1
        assert all("model_utility" not in p["summary"] and "model_utility_no_rouge" in p["summary"] for p in entry["points"])
        assert "model_utility" in entry["summary"] and "forget_Q_A_ROUGE" in entry["summary"]
        assert rows[name]["grid_seconds"] >= rows[name]["cost_seconds"] > 0 and rows[name]["peak_rss_gb"] > 0
        assert entry["summary"]["forget_Q_A_Prob"] != first.references["target"]["forget_Q_A_Prob"]  # the model changed
    eco = first.methods["eco"]
    assert [s["seed"] for s in eco["seeds"]] == [0, 1] and rows["eco"]["seeds"] == 2
    assert eco["forget_quality"]["min"] <= rows["eco"]["forget_quality"] <= eco["forget_quality"]["max"]
    assert rows["eco"]["cost_seconds"] > 0 and all(s["seconds"]["search"] > 0 for s in eco["seeds"])
    for seed in eco["seeds"]:  # evaluations over every token candidate searched, and the verdict's reasons
        search = seed["search"]
        assert search["evaluations"] == sum(c["evaluations"] for c in search["candidates"]) >= search["chosen_evaluations"] > 0
        assert isinstance(search["verdict"], bool) and isinstance(search["warnings"], list)
    assert first.methods["prompt"]["instruction"].count(",") >= 0 and "authors" in first.methods["prompt"]["instruction"]
    out = Path(compare_config.run.output)
    saved = json.loads((out / "compare.json").read_text())
    assert saved["benchmark"] == "tofu-compare" and saved["table"] == json.loads(json.dumps(first.table))
    assert (out / "compare.png").stat().st_size > 1000


def _run_without_work(config):
    """``run_compare(config)`` with training, ECO's fit and evaluation refused: all must come from stored work."""
    def refuse(*args, **kwargs):
        raise AssertionError("stored work was done again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines_module, "unlearn", refuse)
        mp.setattr(compare_eco_module, "fit_tofu_guard", refuse)
        mp.setattr(compare_module, "evaluate_tofu", refuse)
        return run_compare(config)


def test_a_second_run_comes_from_the_cache(first, compare_config):
    assert _run_without_work(compare_config).table == first.table


def test_a_run_of_some_methods_keeps_the_others_it_finished_before(first, compare_config):
    from dataclasses import replace

    saved = Path(compare_config.run.output) / "compare.json"
    before = json.loads(saved.read_text())["methods"]
    again = _run_without_work(replace(compare_config, methods=("prompt",)))
    assert again.table == first.table and again.config["carried"] == ["eco", "ga", "idkdpo", "rmu"]
    assert json.loads(saved.read_text())["methods"] == before  # carried as they were


def _fresh_cache(report, cache: Path) -> None:
    """A cache holding only the target and retain models of ``report`` (no evaluations, no unlearned models,
    no guards): what another machine has after preparing them again."""
    import shutil

    for role in ("target_model", "retain_model"):
        source = Path(report.files[role])
        copy = cache / source.relative_to(source.parents[2])
        shutil.copytree(source, copy)
        for evaluation in copy.glob("tofu-eval-*.json"):
            evaluation.unlink()


def test_compare_json_outlives_the_cache(first, compare_config, tmp_path):
    """On a machine with none of the cached work, the same target and retain models (fingerprints) resume
    from compare.json alone: no training, no fit, no evaluation, the same table."""
    from dataclasses import replace
    import shutil

    done = run_compare(compare_config)  # all cached; compare.json as this config writes it
    _fresh_cache(done, tmp_path / "cache")
    shutil.copytree(compare_config.run.output, tmp_path / "out")
    config = replace(compare_config, run=replace(compare_config.run, cache=str(tmp_path / "cache"), output=str(tmp_path / "out")))

    again = _run_without_work(config)
    assert again.table == done.table and again.pending == [] and again.unfinished == {}
    assert all(p["cached"] for p in again.methods["ga"]["points"])


def test_an_interrupted_compare_keeps_what_it_finished(first, compare_config, tmp_path):
    """A run stopped in the middle of a grid leaves compare.json with the finished points and the method
    pending; a run elsewhere (no cached models but target and retain) trains only the missing point, and a
    compare.json made for other models is not reused but kept beside the new one."""
    from dataclasses import replace

    config = replace(compare_config, methods=("ga",), run=replace(compare_config.run, output=str(tmp_path / "out")))
    real = compare_module._evaluate
    evaluations = []

    def second_fails(*args, **kwargs):  # the second grid point's screen (the target's screen comes first)
        evaluations.append(args[1])
        if evaluations.count("ga") == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare_module, "_evaluate", second_fails)
        with pytest.raises(KeyboardInterrupt):
            run_compare(replace(config, run=replace(config.run, cache=str(tmp_path / "cache1"))))
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["pending"] == ["ga"] and saved["table"][2:] == []
    assert [(p["learning_rate"], p["epochs"]) for p in saved["unfinished"]["ga"]["points"]] == [(1e-3, 1)]

    _fresh_cache(first, tmp_path / "cache2")
    calls = []
    real_unlearn = baselines_module.unlearn

    def counting(*args, **kwargs):
        calls.append(args[4].learning_rate)
        return real_unlearn(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines_module, "unlearn", counting)
        report = run_compare(replace(config, run=replace(config.run, cache=str(tmp_path / "cache2"))))
    assert calls in ([1e-2], [1e-2, 1e-3])  # the missing point; the first again only if it is the one chosen
    assert report.pending == [] and [r["method"] for r in report.table] == ["retain", "target", "ga"]

    other = replace(config, run=replace(config.run, evaluation=TofuEvalConfig(max_new_tokens=4), cache=str(tmp_path / "cache2")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines_module, "unlearn", counting)
        run_compare(other)
    assert json.loads((tmp_path / "out" / "compare.superseded.json").read_text())["context"] == report.context
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["context"] != report.context
    later = _run_without_work(other)  # resumed from its own compare.json: the superseded one stays beside it
    assert json.loads((tmp_path / "out" / "compare.superseded.json").read_text())["context"] == report.context
    back = _run_without_work(replace(config, run=replace(config.run, cache=str(tmp_path / "cache2"))))
    assert back.table == report.table  # the first models again (another machine kind's turn): their run resumes
    assert json.loads((tmp_path / "out" / "compare.superseded.json").read_text())["context"] == later.context


def test_unknown_methods_fail_before_any_work(compare_config):
    from dataclasses import replace

    with pytest.raises(TofuDataError, match="unknown method.*gradient"):
        run_compare(replace(compare_config, methods=("eco", "gradient")))


def test_constant_schedule_trains_once_per_learning_rate(first, compare_config):
    """An epoch grid under ``constant``: one run per learning rate, saving each epoch count on the way; the
    points are cached under the keys their own runs would have, and the grid's cost counts each run once."""
    from dataclasses import replace

    calls = []
    real = baselines_module.unlearn

    def counting(*args, **kwargs):
        calls.append(args[4].epochs)
        return real(*args, **kwargs)

    config = replace(
        compare_config, methods=("ga",), grids={"ga": {"learning_rate": (1e-3, 1e-2), "epochs": (1, 2)}},
        unlearn=replace(compare_config.unlearn, schedule="constant"),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines_module, "unlearn", counting)
        report = run_compare(config)
        assert calls == [2, 2]
        points = report.methods["ga"]["points"]
        assert [(p["learning_rate"], p["epochs"]) for p in points] == [(1e-3, 1), (1e-3, 2), (1e-2, 1), (1e-2, 2)]
        assert len({p["folder"] for p in points}) == 4 and not any(p["cached"] for p in points)
        by = {(p["learning_rate"], p["epochs"]): p["seconds"] for p in points}
        assert 0 < by[1e-3, 1] < by[1e-3, 2] and report.methods["ga"]["seconds"]["grid"] == pytest.approx(by[1e-3, 2] + by[1e-2, 2])
        assert run_compare(config).methods["ga"]["points"] and calls == [2, 2]  # the second run: all cached


def test_an_unknown_schedule_fails_before_any_work(compare_config):
    from dataclasses import replace

    with pytest.raises(TofuDataError, match="schedule must be 'linear' or 'constant', not 'cosine'"):
        run_compare(replace(compare_config, unlearn=replace(compare_config.unlearn, schedule="cosine")))


def test_grid_points_are_screened_on_every_nth_retain_question(first, compare_config, tmp_path):
    """The screen reads every ``screen_stride``-th retain question for the points and the target alike; a
    run with another stride screens again from the cached unlearned models (no training)."""
    from dataclasses import replace
    import shutil

    from eco_unlearn.bench.tofu.data import load_splits

    retain = load_splits(compare_config.run.resolved_preset(), compare_config.run.data_dir).retain
    screen = first.screen
    assert screen["retain_stride"] == compare_config.screen_stride == 5
    assert screen["retain_questions"] == len(retain[::5]) and 0 <= screen["target_utility_no_rouge"] <= 1
    for name in ("ga", "idkdpo", "rmu"):
        assert all(p["screen"] == screen for p in first.methods[name]["points"])
        assert first.methods[name]["screen"] == screen

    shutil.copytree(compare_config.run.output, tmp_path / "out")
    config = replace(compare_config, methods=("ga",), screen_stride=1, run=replace(compare_config.run, output=str(tmp_path / "out")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines_module, "unlearn", lambda *a, **k: pytest.fail("a cached unlearned model was trained again"))
        again = run_compare(config)
    assert again.screen["retain_stride"] == 1 and again.screen["retain_questions"] == len(retain)
    assert all(p["screen"] == again.screen and p["cached"] for p in again.methods["ga"]["points"])
    with pytest.raises(TofuDataError, match="screen_stride"):
        replace(compare_config, screen_stride=0).check()


def test_a_run_stopped_before_it_redoes_a_method_keeps_that_method_in_the_table(first, compare_config, tmp_path):
    """Redoing a finished method (here: another screen) and stopping at once leaves compare.json's table
    as it was, the method pending; the next run goes on from there."""
    from dataclasses import replace
    import shutil

    shutil.copytree(compare_config.run.output, tmp_path / "out")
    before = json.loads((tmp_path / "out" / "compare.json").read_text())["table"]
    config = replace(compare_config, methods=("ga",), screen_stride=2, run=replace(compare_config.run, output=str(tmp_path / "out")))

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare_module, "_evaluate", stop)
        with pytest.raises(KeyboardInterrupt):
            run_compare(config)
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["table"] == before and saved["pending"] == ["ga"]
    again = run_compare(config)
    assert again.pending == [] and again.methods["ga"]["screen"]["retain_stride"] == 2
    assert [r["method"] for r in again.table] == [r["method"] for r in before]


def test_a_refit_with_other_search_settings_that_finds_the_same_strength_makes_the_same_guard():
    from eco_unlearn.bench.tofu.compare_eco import same_guard

    def signature(seed=0, method="bracket", tokens="all_but_last", alpha=0.01):
        return {"eco": {"tokens": tokens, "fit": {"seed": seed, "calibration": {"alpha": alpha},
                                                  "search": {"method": method, "early_stop": True}}}, "target": "t"}

    stored = {"signature": signature(method="scan"), "strength": 35.6, "summary": {"forget_quality": 0.5}}
    new = {"signature": signature(), "strength": 35.6, "tokens": "all_but_last"}
    assert same_guard(stored, new)
    assert "search" in new["signature"]["eco"]["fit"]  # the signatures themselves are left as they were
    assert not same_guard(stored, {**new, "strength": 35.7})  # another strength
    assert not same_guard(stored, {**new, "signature": signature(seed=1)})  # another classifier split
    assert not same_guard(stored, {**new, "signature": signature(alpha=0.05)})  # another threshold
    assert not same_guard(stored, {**new, "tokens": "all"})
    assert not same_guard({k: v for k, v in stored.items() if k != "summary"}, new)  # nothing to reuse
    assert not same_guard({}, new)
    entities = {"signature": signature(method="scan", tokens="entities"), "strength": 35.6, "summary": {}}
    assert not same_guard(entities, {**new, "signature": signature(tokens="entities")})  # which candidate won: unknown
    assert same_guard({**entities, "tokens": "all_but_last"}, {**new, "signature": signature(tokens="entities")})


def test_costs_measured_on_different_cpus_are_named_in_the_table():
    from eco_unlearn.bench.environment import cpu_model, environment
    from eco_unlearn.bench.tofu.compare_report import markdown_table, table_rows

    summary = {"forget_quality": 0.5, "model_utility": 0.3, "forget_Q_A_ROUGE": 0.1, "forget_Q_A_Prob": 0.2}
    references = {"retain": summary, "target": summary}
    point = {"learning_rate": 1e-5, "epochs": 5, "summary": summary, "seconds": 90.0, "cpu": "CPU A"}
    methods = {
        "ga": {"summary": summary, "points": [point], "seconds": {"grid": 90.0, "best_point": 90.0},
               "best": {"learning_rate": 1e-5, "epochs": 5}, "floor_met": True},
        "eco": {"summary": summary, "seeds": [{"seed": 0, "summary": summary, "cpu": "CPU B"}],
                "seconds": {"fit_mean": 60.0}, "forget_quality": {"mean": 0.5, "min": 0.5, "max": 0.5}},
    }
    rows = table_rows(methods, references)
    assert [r["cost_cpus"] for r in rows] == [[], [], ["CPU A"], ["CPU B"]]
    assert "Costs were measured on 2 CPUs (CPU A; CPU B)" in markdown_table(rows)
    methods["eco"]["seeds"][0]["cpu"] = "CPU A"
    assert "CPUs" not in markdown_table(table_rows(methods, references))
    assert environment()["cpu"] == cpu_model() and cpu_model()
