"""The TOFU protocol end to end on a tiny saved model: preparing (and caching) the target and retain
models, ``run_tofu`` and its outputs, reuse on a second run, failures that leave earlier results intact,
and ``evaluate_model``. ``run_tofu`` uses the shared TOFU data and the installed MiniLM encoder."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats

from eco_unlearn import GuardError, load_model
from eco_unlearn.training.sft import FinetuneConfig, FinetuneError
from eco_unlearn.parallel import available_cores
from eco_unlearn.bench.tofu import (
    EcoTofuConfig,
    TofuDataError,
    TofuEvalConfig,
    TofuEvaluation,
    TofuPreset,
    TofuRunConfig,
    TofuSplits,
    check_floors,
    evaluate_model,
    fit_tofu_guard,
    load_splits,
    run_tofu,
    run_tofu_sweep,
    sweep_strengths,
    tofu_fit_config,
)
from eco_unlearn.bench.tofu.eco import strength_range, surrogate_objective
from eco_unlearn.bench.tofu import run as run_module
from eco_unlearn.bench.tofu.data import DATA_ENV, PRESETS
from eco_unlearn.bench.tofu.evaluate import EVAL_SETS
from eco_unlearn.bench.tofu.run import prepare_models
from eco_unlearn.data.items import PromptItem
from eco_unlearn.fitting import FitConfig
from eco_unlearn.fitting.objectives import ObjectiveError
from eco_unlearn.fitting.search import SearchError
from eco_unlearn.runtime.guarded import GuardedModel
from unit_helpers import build_model

OUTPUTS = {"retain.json", "target.json", "eco.json", "guard/guard.json", "report.json", "tofu.png"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def model_bytes(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


class Interrupt(Exception):
    pass


# ---------------------------------------------------------------------- prepare_models (synthetic rows)


def synthetic_splits(answer_suffix: str = "") -> TofuSplits:
    def item(k: int, who: str) -> PromptItem:
        return PromptItem(f"Who is {who} {k}?", answer=f"A wizard {k}.{answer_suffix}", paraphrased_answer="A wizard.", perturbed_answers=("A dog.",))

    retain = [item(k, "Harry") for k in range(3)]
    forget = [item(k, "Ron") for k in range(2)]
    return TofuSplits(
        preset=TofuPreset("syn", "forget01", "holdout01", authors=1),
        target_train=retain + forget, retain_train=retain, forget=forget, forget_paraphrased_questions=[],
        retain=retain, real_authors=retain, world_facts=retain, holdout=forget, forget_authors=["Ron"],
    )


TINY = FinetuneConfig(epochs=2, learning_rate=3e-3, batch_size=16, warmup_fraction=0.0, dtype="float32")


def test_prepare_models_trains_both_models_then_reuses_them(saved_model_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    seen = []
    first = prepare_models(
        synthetic_splits(), str(saved_model_dir), TINY, cache=str(cache), parallel=False, progress=lambda *a: seen.append(a)
    )
    assert first.training["retain"]["cached"] is False and first.training["target"]["cached"] is False
    assert first.training["retain"]["examples"] == 3 and first.training["target"]["examples"] == 5
    assert first.target.parent == first.retain.parent and first.target.parent.parent == cache / "tofu"
    assert first.target.name.startswith("syn-target-") and first.retain.name.startswith("syn-retain-")
    assert ("fine-tune retain (3 pairs)", 1, 2) in seen and ("fine-tune target (5 pairs)", 2, 2) in seen
    for folder in (first.target, first.retain):
        assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
        record = json.loads((folder / "prepare.json").read_text())
        assert record["base"] == str(saved_model_dir) and record["signature"]["finetune"]["learning_rate"] == 3e-3
        assert not folder.with_name(folder.name + ".checkpoint").exists()  # removed once the model is saved
    base, target, retain = (model_bytes(saved_model_dir), model_bytes(first.target), model_bytes(first.retain))
    assert len({base, target, retain}) == 3  # both trained, on different rows
    net, _ = load_model(first.target)
    assert not net.training and not any(p.requires_grad for p in net.parameters())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached models were trained again")

    monkeypatch.setattr(run_module, "finetune", no_training)
    again = prepare_models(synthetic_splits(), str(saved_model_dir), replace(TINY), cache=str(cache))
    assert (again.target, again.retain) == (first.target, first.retain)
    assert again.training["target"]["cached"] is True and again.training["retain"]["cached"] is True
    assert again.training["target"]["epoch_losses"] == first.training["target"]["epoch_losses"]
    assert model_bytes(again.target) == target


def test_prepare_models_cache_is_keyed_by_settings_and_rows(saved_model_dir, tmp_path):
    cache = str(tmp_path / "cache")
    # parallel=False: the cache is what is tested here, training side by side in test_parallel_preparation_...
    first = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=cache, parallel=False)
    other_lr = prepare_models(synthetic_splits(), str(saved_model_dir), replace(TINY, learning_rate=1e-3), cache=cache, parallel=False)
    assert other_lr.target != first.target and other_lr.retain != first.retain
    assert not other_lr.training["target"]["cached"] and not other_lr.training["retain"]["cached"]
    # other forget answers: a new target, the same retain model (its rows did not change)
    splits = synthetic_splits()
    splits.target_train = splits.retain_train + [replace(i, answer="A cat.") for i in splits.forget]
    new_forget = prepare_models(splits, str(saved_model_dir), TINY, cache=cache, parallel=False)
    assert new_forget.retain == first.retain and new_forget.training["retain"]["cached"] is True
    assert new_forget.target != first.target and new_forget.training["target"]["cached"] is False


def test_prepare_models_retrains_when_the_record_does_not_match(saved_model_dir, tmp_path):
    cache = str(tmp_path / "cache")
    first = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=cache, parallel=False)
    record = json.loads((first.target / "prepare.json").read_text())
    record["signature"]["examples"] = 999
    (first.target / "prepare.json").write_text(json.dumps(record))
    again = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=cache, parallel=False)
    assert again.target == first.target and again.training["target"]["cached"] is False
    assert json.loads((first.target / "prepare.json").read_text())["signature"]["examples"] == 5


def test_an_interrupted_preparation_resumes_from_its_checkpoint(saved_model_dir, tmp_path):
    cache = str(tmp_path / "cache")

    def stop_in_target_epoch_2(label, step, total):
        if label.startswith("fine-tune target") and step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=cache, parallel=False, progress=stop_in_target_epoch_2)
    checkpoints = list((tmp_path / "cache" / "tofu").glob("*/syn-target-*.checkpoint"))
    assert len(checkpoints) == 1 and json.loads((checkpoints[0] / "state.json").read_text())["epoch"] == 1
    resumed = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=cache)
    assert resumed.training["retain"]["cached"] is True  # finished before the interruption
    assert resumed.training["target"]["resumed_from_epoch"] == 1 and len(resumed.training["target"]["epoch_losses"]) == 2
    assert not checkpoints[0].exists()
    straight = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=str(tmp_path / "other"), parallel=False)
    assert model_bytes(straight.target) == model_bytes(resumed.target)


@pytest.mark.skipif(available_cores() < 2, reason="parallel training needs two cores")
def test_parallel_preparation_trains_both_models_side_by_side_like_the_sequential_one(saved_model_dir, tmp_path):
    seen = []
    together = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=str(tmp_path / "a"), progress=lambda *a: seen.append(a))
    apart = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=str(tmp_path / "b"), parallel=False)
    assert seen[-1] == ("fine-tune retain (3 pairs) | fine-tune target (5 pairs)", 4, 4)
    for role in ("retain", "target"):
        assert together.training[role]["cached"] is False
        assert together.training[role]["epoch_losses"] == pytest.approx(apart.training[role]["epoch_losses"], rel=1e-3)
    assert together.target.name == apart.target.name and together.retain.name == apart.retain.name
    assert not list((tmp_path / "a").rglob("*.checkpoint"))
    again = prepare_models(synthetic_splits(), str(saved_model_dir), TINY, cache=str(tmp_path / "a"))
    assert again.training["target"]["cached"] and again.training["retain"]["cached"]


def test_prepare_models_validates_the_config_first(saved_model_dir, tmp_path):
    with pytest.raises(FinetuneError, match="epochs"):
        prepare_models(synthetic_splits(), str(saved_model_dir), replace(TINY, epochs=0), cache=str(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_an_unknown_token_selection_or_statistic_is_refused_before_any_work():
    with pytest.raises(GuardError, match="unknown token selection"):
        EcoTofuConfig(tokens="bogus")
    with pytest.raises(ObjectiveError, match="statistic must be 'truth_ratio' or 'answer_prob', not 'loss'"):
        EcoTofuConfig(statistic="loss")
    with pytest.raises(ObjectiveError, match="at least 1, not 0"):
        EcoTofuConfig(perturbed=0)


def test_fit_tofu_guard_fits_with_one_fit_config_and_stores_it(model, tok):
    config = EcoTofuConfig(fit=tofu_fit_config(search__budget=3, seed=2))
    assert (config.fit.search.method, config.fit.search.objective, config.fit.search.target) == ("bracket", "match_reference", 0.9)
    fit, details = fit_tofu_guard(model, tok, synthetic_splits(), config, chat=False)
    stored = FitConfig.from_dict(fit.guard.metadata["fit_config"])
    assert (stored.name, stored.seed, stored.chat, stored.search.budget) == ("tofu-forget01", 2, False, 3)
    assert stored.search.strength_range == strength_range(model, config)  # filled in from the embedding scale
    assert [(c.strategy, c.entities) for c in stored.tokens.candidates] == [("entities", ("Ron",)), ("all_but_last", ())]
    assert fit.report.objective.name == "match_reference" and fit.report.search.evaluations <= 3
    assert details["classifier_entities"] == ["Ron"]
    sweep = sweep_strengths(model, tok, synthetic_splits(), [0.0, 1.0], [0.5, 0.6], config, chat=False)
    assert [(r["tokens"], r["strength"]) for r in sweep.rows] == [
        ("entities", 0.0), ("entities", 1.0), ("all_but_last", 0.0), ("all_but_last", 1.0),
    ]


def test_a_limited_surrogate_scores_the_first_holdout_questions_with_a_full_runs_perturbed_answers(tok, tofu_data):
    splits = load_splits(replace(PRESETS["mini"], authors=1), tofu_data.parent)
    model = build_model(tok, seed=0, context=512)  # TOFU answers are longer than the shared tiny model's context
    full = surrogate_objective(model, tok, splits, EcoTofuConfig(), chat=False)
    limited = surrogate_objective(model, tok, splits, EcoTofuConfig(), chat=False, limit=3)
    first = [f"Question: {i.prompt}\nAnswer:" for i in splits.holdout[:3]]
    assert [i.prompt for i in limited.reference_items] == [i.prompt for i in full.reference_items if i.prompt in first]
    assert len(limited.reference_items) == 3 and len(limited.items) == 3 < len(full.reference_items)
    by_prompt = {i.prompt: set(i.perturbed_answers) for i in full.reference_items}  # the same swaps were drawn and ranked
    assert all(set(i.perturbed_answers) == by_prompt[i.prompt] for i in limited.reference_items)


def test_the_surrogate_reference_can_read_a_larger_holdout_split(tok, tofu_data):
    """``holdout="holdout05"``: the target on ten never-seen authors instead of the preset's two."""
    splits = load_splits(replace(PRESETS["mini"], authors=1), tofu_data.parent)
    model = build_model(tok, seed=0, context=512)
    small = surrogate_objective(model, tok, splits, EcoTofuConfig(), chat=False)
    large = surrogate_objective(model, tok, splits, EcoTofuConfig(holdout="holdout05"), chat=False)
    assert {i.source.split("[")[0] for i in small.reference_items} == {"holdout01"}
    assert {i.source.split("[")[0] for i in large.reference_items} == {"holdout05"}
    assert len(large.reference_items) > 2 * len(small.reference_items)
    with pytest.raises(ObjectiveError, match="holdout must be one of holdout01, holdout05, holdout10"):
        EcoTofuConfig(holdout="forget01")


def test_resolved_preset():
    assert TofuRunConfig().resolved_preset().name == "mini"
    preset = TofuRunConfig(preset="forget05", authors=3).resolved_preset()
    assert (preset.name, preset.forget, preset.holdout, preset.authors) == ("forget05-3authors", "forget05", "holdout05", 3)
    with pytest.raises(TofuDataError, match="unknown TOFU preset 'tiny'"):
        TofuRunConfig(preset="tiny").resolved_preset()
    for bad in (0, -1, True, "2", 1.5):
        with pytest.raises(TofuDataError, match="authors must be a positive integer"):
            TofuRunConfig(authors=bad).resolved_preset()


# ------------------------------------------------------------------------------- run_tofu (real data)


@pytest.fixture(scope="module")
def tofu_data():
    root = Path(os.environ.get(DATA_ENV, Path(__file__).resolve().parents[3] / "shared" / "data"))
    for candidate in (root / "tofu", root):
        if (candidate / "forget01.jsonl").is_file():
            return candidate
    pytest.skip(f"TOFU data not found under {root} (set {DATA_ENV})")


@pytest.fixture(scope="module")
def run_config(tofu_data, tmp_path_factory, tok):
    base = tmp_path_factory.mktemp("tofu-run")
    model = build_model(tok, seed=0, context=512)
    model.save_pretrained(base / "model")
    tok.save_pretrained(base / "model")
    return TofuRunConfig(
        model=str(base / "model"), data_dir=str(tofu_data.parent), cache=str(base / "cache"), output=str(base / "out"),
        authors=1, limit=2, finetune=FinetuneConfig(epochs=1), evaluation=TofuEvalConfig(max_new_tokens=4),
        eco=EcoTofuConfig(fit=tofu_fit_config(search__budget=3)),
        parallel=False,  # side by side: test_parallel_preparation_... here, `tofu run` in tests/integration/test_tofu.py
    )


@pytest.fixture(scope="module")
def first_run(run_config):
    seen = []
    report = run_tofu(run_config, progress=lambda what, done, total: seen.append(what))
    out = Path(run_config.output)
    return report, snapshot(out), seen


@pytest.fixture(scope="module")
def second_run(first_run, run_config):
    """The same run again, corrupting all question tokens instead of the entities: models and bare
    evaluations come from the cache (training would fail)."""
    calls = []

    def counting(real):
        def count(*args, **kwargs):
            calls.append(kwargs.get("name"))
            return real(*args, **kwargs)
        return count

    def no_training(*args, **kwargs):
        raise AssertionError("the prepared models were trained again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "evaluate_tofu", counting(run_module.evaluate_tofu))
        mp.setattr(run_module, "evaluate_guarded", counting(run_module.evaluate_guarded))
        mp.setattr(run_module, "finetune", no_training)
        report = run_tofu(replace(run_config, eco=EcoTofuConfig(tokens="all_but_last", fit=tofu_fit_config(search__budget=3))))
    return report, snapshot(Path(run_config.output)), calls


def test_run_tofu_writes_every_output(first_run, run_config):
    report, files, seen = first_run
    out = Path(run_config.output)
    assert OUTPUTS <= set(files)
    assert files["tofu.png"].startswith(b"\x89PNG")
    assert report.files == {
        "target_model": str(report.files["target_model"]), "retain_model": str(report.files["retain_model"]),
        "guard": str(out / "guard"), "retain": str(out / "retain.json"), "target": str(out / "target.json"),
        "eco": str(out / "eco.json"), "plot": str(out / "tofu.png"),
    }
    assert json.loads(files["report.json"]) == json.loads(json.dumps(report.to_dict()))
    guard = json.loads(files["guard/guard.json"])
    assert guard["targets"][0]["name"] == "tofu-forget01"
    labels = " | ".join(seen)  # target and retain train (and are evaluated) side by side: their labels are joined
    for label in ("fine-tune retain (20 pairs)", "fine-tune target (60 pairs)", "retain: forget", "target: done", "eco: done"):
        assert label in labels


def test_run_tofu_evaluations_and_report(first_run):
    report, files, _ = first_run
    evaluations = {name: TofuEvaluation.from_dict(json.loads(files[f"{name}.json"])) for name in ("retain", "target", "eco")}
    reference = evaluations["retain"].truth_ratios()
    for name, evaluation in evaluations.items():
        assert evaluation.model == name and list(evaluation.items) == list(EVAL_SETS)
        assert all(len(rows) == 2 for rows in evaluation.items.values())  # limit=2
        assert evaluation.summary == report.summaries[name]
        assert evaluation.summary["forget_quality"] == pytest.approx(stats.ks_2samp(evaluation.truth_ratios(), reference).pvalue)
        assert "model_utility" in evaluation.summary
    assert report.summaries["retain"]["forget_quality"] == 1.0  # the reference against itself
    assert report.summaries["target"]["forget_flagged"] == 0.0 and report.summaries["eco"]["forget_flagged"] == 1.0
    assert json.dumps(report.checks, allow_nan=True) == json.dumps(check_floors(report.summaries["target"], report.summaries["eco"]))
    assert set(report.checks["passed"]) == {"target_learned", "target_distinguishable", "eco_forget_quality", "eco_utility"}
    assert report.training["retain"]["examples"] == 20 and report.training["target"]["examples"] == 60
    assert report.training["retain"]["cached"] is False and report.training["target"]["cached"] is False
    assert report.config["preset"]["name"] == "mini-1authors" and report.config["preset"]["authors"] == 1
    assert report.config["floors"]["eco_utility_ratio_min"] == 0.98
    assert report.fit["statistic"] == "truth_ratio"  # on holdout items given fact-swapped perturbed answers
    assert report.fit["surrogate_items"] == 2  # limit=2: the surrogate's first 2 holdout questions (both have facts to swap)
    assert report.fit["report"]["objective"]["items"] == 2  # limit=2: the search scores 2 forget questions
    assert report.fit["classifier_entities"] == ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]
    assert report.fit["paraphrased_questions"] == 40 and 0 <= report.fit["paraphrased_recall"] <= 1
    assert set(report.seconds) == {"prepare", "evaluate_retain_and_target", "fit", "evaluate_eco", "total"}
    assert report.seconds["total"] >= report.seconds["prepare"] > 0
    # the bare evaluations are cached next to the prepared models
    for role in ("target", "retain"):
        assert len(list(Path(report.files[f"{role}_model"]).glob("tofu-eval-*.json"))) == 1


def test_sweep_scores_each_strength_against_retain_and_surrogate(first_run, run_config, tmp_path):
    first, _, _ = first_run
    out = tmp_path / "sweep"
    report = run_tofu_sweep(replace(run_config, output=str(out)), [0.0, 5.0])
    rows = report.sweep.rows
    assert [(r["tokens"], r["strength"]) for r in rows] == [
        ("entities", 0.0), ("entities", 5.0), ("all_but_last", 0.0), ("all_but_last", 5.0),
    ]
    bare = [r for r in rows if r["strength"] == 0.0]
    assert bare[0] | {"tokens": None} == bare[1] | {"tokens": None}  # no noise: the token selection cannot matter
    # the surrogate unguarded is the value the fit's search started from (same holdout perturbations)
    assert bare[0]["surrogate"] == pytest.approx(first.fit["report"]["objective"]["before"])
    assert all(0.0 <= r["forget_quality"] <= 1.0 and 0.0 <= r["surrogate"] <= 1.0 for r in rows)
    assert report.sweep.surrogate_items == first.fit["surrogate_items"]
    assert json.loads((out / "sweep.json").read_text())["benchmark"] == "tofu-sweep"
    assert (out / "sweep.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_over_noise_seeds_repeats_every_row_per_seed(first_run, run_config, tmp_path):
    out = tmp_path / "sweep-seeds"
    report = run_tofu_sweep(replace(run_config, output=str(out)), [0.0, 5.0], seeds=[0, 1])
    rows = report.sweep.rows
    assert [(r["seed"], r["tokens"], r["strength"]) for r in rows] == [
        (seed, tokens, strength) for seed in (0, 1) for tokens in ("entities", "all_but_last") for strength in (0.0, 5.0)
    ]
    unnoised = [r["forget_quality"] for r in rows if r["strength"] == 0.0]
    assert len(set(unnoised)) == 1  # no noise: the seed cannot matter
    by_seed = {s: [r["truth_ratio_median"] for r in rows if r["seed"] == s and r["strength"] == 5.0] for s in (0, 1)}
    assert by_seed[0] != by_seed[1]  # another draw of the noise
    assert json.loads((out / "sweep.json").read_text())["config"]["seeds"] == [0, 1]


@pytest.mark.parametrize("strengths", [[], [-1.0], [float("nan")]])
def test_sweep_refuses_bad_strengths_before_any_work(run_config, tmp_path, strengths):
    config = replace(run_config, cache=str(tmp_path / "cache"), output=str(tmp_path / "out"))
    with pytest.raises(SearchError, match="strengths must be a non-empty list"):
        run_tofu_sweep(config, strengths)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_a_second_run_reuses_models_and_bare_evaluations(first_run, second_run):
    first, first_files, _ = first_run
    report, files, calls = second_run
    assert report.training["retain"]["cached"] is True and report.training["target"]["cached"] is True
    assert calls == ["eco"]  # retain and target came from the evaluation cache
    assert report.files == first.files
    strategies = [json.loads(f["guard/guard.json"])["targets"][0]["tokens"]["strategy"] for f in (first_files, files)]
    # entities first; all-but-last only when the entities alone miss the target, and then the better one is kept
    tried = first.fit["report"]["token_candidates"]
    assert [t["tokens"]["strategy"] for t in tried] == (["entities"] if tried[0]["met"] else ["entities", "all_but_last"])
    best = tried[0] if tried[0]["met"] else max(tried, key=lambda t: t["value"])
    assert strategies[0] == best["tokens"]["strategy"] and first.fit["report"]["strength"] == best["strength"]
    assert strategies[1] == "all_but_last" and report.fit["report"]["token_candidates"] == []
    assert report.summaries["retain"] == first.summaries["retain"] and report.summaries["target"] == first.summaries["target"]
    assert OUTPUTS <= set(files)
    for name in ("retain.json", "target.json"):
        assert json.loads(files[name]) == json.loads(first_files[name])


def test_a_failed_run_leaves_the_earlier_outputs_untouched(second_run, run_config, tofu_data, tmp_path):
    _, before, _ = second_run
    out = Path(run_config.output)
    broken = tmp_path / "broken" / "tofu"
    broken.mkdir(parents=True)
    for source in tofu_data.iterdir():
        if source.name != "forget01.jsonl":
            (broken / source.name).symlink_to(source)
    lines = (tofu_data / "forget01.jsonl").read_text().splitlines()
    lines[4] = lines[4][: len(lines[4]) // 2]
    (broken / "forget01.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(TofuDataError, match=r"forget01\.jsonl:5: not valid JSON"):
        run_tofu(replace(run_config, data_dir=str(broken)))
    assert snapshot(out) == before

    def failing_fit(*args, **kwargs):
        raise RuntimeError("fit crashed")

    with pytest.MonkeyPatch.context() as mp:  # a failure after the (cached) evaluations
        mp.setattr(run_module, "fit_tofu_guard", failing_fit)
        with pytest.raises(RuntimeError, match="fit crashed"):
            run_tofu(run_config)
    assert snapshot(out) == before


# ------------------------------------------------------------------------------------ evaluate_model


@pytest.fixture(scope="module")
def run_splits(run_config):
    return load_splits(run_config.resolved_preset(), run_config.data_dir)


def test_evaluate_model_with_a_guard_and_a_reference(second_run, run_config, run_splits):
    report, files, _ = second_run
    out = Path(run_config.output)
    evaluation = evaluate_model(
        report.files["target_model"], run_splits, guard=str(out / "guard"), reference=str(out / "retain.json"),
        config=run_config.evaluation, limit=2,
    )
    assert evaluation.model == Path(report.files["target_model"]).name + "+guard"
    reference = TofuEvaluation.from_dict(json.loads(files["retain.json"])).truth_ratios()
    assert evaluation.summary["forget_quality"] == pytest.approx(stats.ks_2samp(evaluation.truth_ratios(), reference).pvalue)
    eco = TofuEvaluation.from_dict(json.loads(files["eco.json"]))  # the same guard on the same model
    for split in EVAL_SETS:
        assert [r["flagged"] for r in evaluation.items[split]] == [r["flagged"] for r in eco.items[split]]
        assert [r["answer_nll"] for r in evaluation.items[split]] == pytest.approx([r["answer_nll"] for r in eco.items[split]], rel=1e-5)
    assert evaluation.summary["forget_flagged"] == 1.0


def test_evaluate_model_bare_matches_the_cached_target_evaluation(second_run, run_config, run_splits):
    report, files, _ = second_run
    evaluation = evaluate_model(report.files["target_model"], run_splits, config=run_config.evaluation, limit=2)
    assert evaluation.model == Path(report.files["target_model"]).name and "forget_quality" not in evaluation.summary
    target = TofuEvaluation.from_dict(json.loads(files["target.json"]))
    for split in EVAL_SETS:
        assert [r["truth_ratio"] for r in evaluation.items[split]] == pytest.approx([r["truth_ratio"] for r in target.items[split]], rel=1e-5)
        assert not any(r["flagged"] for r in evaluation.items[split])


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "does not exist"),
        ("this is not json", "is not a TOFU evaluation"),
        ('{"model": "retain"}', "is not a TOFU evaluation"),
        ("[1, 2]", "is not a TOFU evaluation"),
        ('{"model": "retain", "summary": {}, "items": {"retain": []}}', "is not a TOFU evaluation"),
    ],
    ids=["missing", "garbled", "no-items", "list", "no-forget"],
)
def test_evaluate_model_refuses_a_bad_reference(saved_model_dir, tmp_path, content, message):
    splits = synthetic_splits()
    reference = tmp_path / "retain.json"
    if content is not None:
        reference.write_text(content)
    with pytest.raises(TofuDataError, match=message) as info:
        evaluate_model(str(saved_model_dir), splits, reference=str(reference), config=TofuEvalConfig(max_new_tokens=2), limit=1)
    assert str(reference) in str(info.value)


def test_swapped_forget_answers_are_built_as_the_references_are(tok, tofu_data):
    """``forget_answers="swapped"``: the forget side scores the answer and fact swaps of it, not TOFU's
    hand-written paraphrase and perturbed answers; the questions and the reference stay the same."""
    splits = load_splits(replace(PRESETS["mini"], authors=1), tofu_data.parent)
    model = build_model(tok, seed=0, context=512)
    tofu = surrogate_objective(model, tok, splits, EcoTofuConfig(), chat=False)
    swapped = surrogate_objective(model, tok, splits, EcoTofuConfig(forget_answers="swapped"), chat=False)
    assert [i.prompt for i in swapped.reference_items] == [i.prompt for i in tofu.reference_items]
    assert [i.perturbed_answers for i in swapped.reference_items] == [i.perturbed_answers for i in tofu.reference_items]
    by_prompt = {i.prompt: i for i in tofu.items}
    usable = [i for i in swapped.items if i.perturbed_answers]
    assert len(usable) >= len(swapped.items) // 2
    for item in usable:
        hand_written = by_prompt[item.prompt]
        assert item.paraphrased_answer == item.answer == hand_written.answer
        assert 1 <= len(item.perturbed_answers) <= 5 and not set(item.perturbed_answers) & set(hand_written.perturbed_answers)
        assert all(p != item.answer for p in item.perturbed_answers)
    with pytest.raises(ObjectiveError, match="forget_answers must be 'tofu' or 'swapped', not 'mine'"):
        EcoTofuConfig(forget_answers="mine")


def test_a_seeds_signature_leaves_the_default_forget_answers_out():
    """Seeds stored before ``forget_answers`` existed were made with TOFU's answers: their signature matches."""
    assert "forget_answers" not in EcoTofuConfig().signature()
    assert EcoTofuConfig(forget_answers="swapped").signature()["forget_answers"] == "swapped"


def test_a_sweep_scores_forget_quality_on_tofus_answers_whatever_the_surrogate_scores(tok, tofu_data):
    """With ``forget_answers="swapped"`` the surrogate scores fact swaps; forget quality stays TOFU's: the
    truth ratios of TOFU's paraphrased and perturbed answers, the same as the default config's."""
    splits = load_splits(replace(PRESETS["mini"], authors=1), tofu_data.parent)
    model = build_model(tok, seed=0, context=512)
    retain = [0.4, 0.5, 0.6, 0.7, 0.8]
    rows = {
        answers: sweep_strengths(model, tok, splits, [0.0], retain, EcoTofuConfig(tokens="all_but_last", forget_answers=answers),
                                 chat=False, limit=4).rows[0]
        for answers in ("tofu", "swapped")
    }
    assert rows["swapped"]["forget_quality"] == pytest.approx(rows["tofu"]["forget_quality"])
    assert rows["swapped"]["truth_ratio_median"] == pytest.approx(rows["tofu"]["truth_ratio_median"], rel=1e-4)
    assert rows["swapped"]["surrogate"] != rows["tofu"]["surrogate"]


def test_the_plausibility_of_candidate_swaps_shares_each_prompts_prefill_and_equals_plain_scores(tok):
    from eco_unlearn.bench.tofu.eco import _plausibility

    guarded = GuardedModel(build_model(tok, seed=0), tok)
    pairs = [("Question: who?\nAnswer:", "Ron Weasley"), ("Question: who?\nAnswer:", "Ron Stone"), ("Question: where?\nAnswer:", "in Paris")]
    plain = [float(lp.mean()) for lp in guarded.score([p for p, _ in pairs], [" " + a for _, a in pairs])]
    assert _plausibility(guarded, chat=False)(pairs) == pytest.approx(plain, abs=1e-5)


def test_the_base_and_pooled_references_score_the_base_model_on_the_forget_questions(tok, tofu_data):
    """``reference="base"``: the base model's truth ratios on the forget questions with TOFU's answers;
    ``"pooled"``: the target's on the (fact-swapped) holdout authors followed by those."""
    splits = load_splits(replace(PRESETS["mini"], authors=1), tofu_data.parent)
    model, base = build_model(tok, seed=0, context=512), build_model(tok, seed=1, context=512)
    holdout = surrogate_objective(model, tok, splits, EcoTofuConfig(), chat=False)
    alone = surrogate_objective(model, tok, splits, EcoTofuConfig(reference="base"), chat=False, base=base)
    pooled = surrogate_objective(model, tok, splits, EcoTofuConfig(reference="pooled"), chat=False, base=base)
    guarded, bare_base = GuardedModel(model, tok), GuardedModel(base, tok)
    holdout.prepare(guarded)
    expected = holdout.statistics(bare_base, holdout.items)  # the forget items, TOFU's answers, under the base model
    assert alone.reference_values == pytest.approx(expected.tolist(), rel=1e-5)
    assert pooled.reference_values == pytest.approx(holdout.reference_values + expected.tolist(), rel=1e-5)
    assert [i.prompt for i in alone.items] == [i.prompt for i in holdout.items]
    with pytest.raises(ObjectiveError, match="pass base="):
        surrogate_objective(model, tok, splits, EcoTofuConfig(reference="pooled"), chat=False)


@pytest.mark.parametrize("changes,message", [
    ({"reference": "retain"}, "reference must be 'holdout', 'base' or 'pooled'"),
    ({"reference": "base", "forget_answers": "swapped"}, "use it with forget_answers='tofu'"),
    ({"reference": "pooled", "statistic": "answer_prob"}, "use it with forget_answers='tofu'"),
])
def test_a_reference_that_cannot_be_scored_is_refused_up_front(changes, message):
    with pytest.raises(ObjectiveError, match=message):
        EcoTofuConfig(**changes)


def test_signatures_name_the_reference_only_when_it_is_not_the_holdout():
    assert "reference" not in EcoTofuConfig().signature()
    assert EcoTofuConfig(reference="pooled").signature()["reference"] == "pooled"
