"""TOFU metrics and report: ``summarise`` against hand computations, ``evaluate_tofu`` on the tiny model
against direct ``GuardedModel`` calls, and the floors check and trade-off plot of the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from eco_unlearn import GuardedModel
from eco_unlearn.bench.tofu import TofuEvalConfig, TofuEvaluation, check_floors, evaluate_tofu, plot_tradeoff, summarise, summary_rows
from eco_unlearn.bench.tofu.evaluate import EVAL_SETS, UTILITY_KEYS, evaluate_guarded
from eco_unlearn.errors import TofuDataError
from eco_unlearn.bench.tofu.report import COLUMNS, FLOORS
from eco_unlearn.data.items import PromptItem
from eco_unlearn.metrics import rouge_l_recall
from unit_helpers import make_guard

# ------------------------------------------------------------------------------------------ summarise


def rows(**columns) -> list[dict]:
    """Per-item rows from equal-length columns (truth_ratio, prob, prob_normalised, rouge_l_recall, flagged)."""
    n = len(next(iter(columns.values())))
    return [{key: values[i] for key, values in columns.items()} for i in range(n)]


SYNTHETIC = {
    "forget": rows(
        truth_ratio=[0.5, 2.0, 1.0, 0.25], prob=[0.9, 0.7, 0.5, 0.3], prob_normalised=[0.0] * 4,
        rouge_l_recall=[1.0, 0.5, 0.25, 0.25], flagged=[True, True, False, True],
    ),
    "retain": rows(
        truth_ratio=[0.2, 1.5, 0.9], prob=[0.6, 0.3, 0.3], prob_normalised=[0.0] * 3,
        rouge_l_recall=[0.8, 0.4, 0.6], flagged=[False, False, True],
    ),
    "real_authors": rows(
        truth_ratio=[0.5, 0.25], prob=[0.01, 0.01], prob_normalised=[0.7, 0.5],
        rouge_l_recall=[1.0, 0.0], flagged=[False, False],
    ),
    "world_facts": rows(
        truth_ratio=[0.1, 3.0, 0.6, 0.3, 0.5], prob=[0.02] * 5, prob_normalised=[0.9, 0.8, 0.5, 0.6, 0.7],
        rouge_l_recall=[1.0, 1.0, 0.5, 0.0, 0.5], flagged=[False] * 5,
    ),
}

# by hand
FORGET_TR = (0.5 + 0.5 + 1.0 + 0.25) / 4  # mean(min(tr, 1/tr))
RETAIN_TR = (0.8 + 0.0 + 0.1) / 3  # mean(max(0, 1 - tr))
RA_TR = (0.5 + 0.75) / 2
WF_TR = (0.9 + 0.0 + 0.4 + 0.7 + 0.5) / 5
EXPECTED = {
    "forget_Q_A_Prob": 0.6, "forget_Q_A_ROUGE": 0.5, "forget_truth_ratio": FORGET_TR, "forget_flagged": 0.75,
    "retain_Q_A_Prob": 0.4, "retain_Q_A_ROUGE": 0.6, "retain_Truth_Ratio": RETAIN_TR, "retain_flagged": 1 / 3,
    "ra_Q_A_Prob_normalised": 0.6, "ra_Q_A_ROUGE": 0.5, "ra_Truth_Ratio": RA_TR, "ra_flagged": 0.0,
    "wf_Q_A_Prob_normalised": 0.7, "wf_Q_A_ROUGE": 0.6, "wf_Truth_Ratio": WF_TR, "wf_flagged": 0.0,
}


def test_summarise_matches_hand_computations():
    summary = summarise(SYNTHETIC)
    assert set(summary) == set(EXPECTED) | {"model_utility", "model_utility_no_rouge"}
    assert summary["model_utility_no_rouge"] == pytest.approx(
        stats.hmean([EXPECTED[k] for k in UTILITY_KEYS if "ROUGE" not in k]), rel=1e-12)
    for key, value in EXPECTED.items():
        assert summary[key] == pytest.approx(value, abs=1e-12), key
    utility = [EXPECTED[k] for k in UTILITY_KEYS]
    assert summary["model_utility"] == pytest.approx(stats.hmean(utility), rel=1e-12)
    assert summary["model_utility"] == pytest.approx(9 / sum(1 / v for v in utility), rel=1e-12)
    assert all(isinstance(v, float) for v in summary.values())


def test_model_utility_uses_the_nine_published_numbers():
    assert UTILITY_KEYS == (
        "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
        "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
        "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio",
    )
    # forget numbers do not enter the utility
    changed = {**SYNTHETIC, "forget": [{**r, "prob": 0.01, "rouge_l_recall": 0.0} for r in SYNTHETIC["forget"]]}
    assert summarise(changed)["model_utility"] == summarise(SYNTHETIC)["model_utility"]


def test_model_utility_is_zero_when_one_number_is_zero():
    # every retain truth ratio >= 1: retain_Truth_Ratio = 0
    worse = {**SYNTHETIC, "retain": [{**r, "truth_ratio": 1.2} for r in SYNTHETIC["retain"]]}
    summary = summarise(worse)
    assert summary["retain_Truth_Ratio"] == 0.0 and summary["model_utility"] == 0.0


def test_forget_quality_is_the_ks_test_p_value():
    reference = [0.9, 0.8, 1.1, 0.95, 0.7, 0.85]
    summary = summarise(SYNTHETIC, reference)
    expected = stats.ks_2samp([0.5, 2.0, 1.0, 0.25], reference).pvalue
    assert summary["forget_quality"] == pytest.approx(expected, rel=1e-12)
    assert summarise(SYNTHETIC, [0.5, 2.0, 1.0, 0.25])["forget_quality"] == pytest.approx(1.0)
    far = summarise(SYNTHETIC, [50.0 + i for i in range(20)])["forget_quality"]
    assert far == pytest.approx(stats.ks_2samp([0.5, 2.0, 1.0, 0.25], [50.0 + i for i in range(20)]).pvalue) and far < 0.01
    assert "forget_quality" not in summarise(SYNTHETIC)


def test_partial_items_give_partial_summaries():
    only_forget = summarise({"forget": SYNTHETIC["forget"]}, [1.0, 2.0])
    assert set(only_forget) == {"forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "forget_flagged", "forget_quality"}
    no_forget = summarise({k: v for k, v in SYNTHETIC.items() if k != "forget"}, [1.0, 2.0])
    assert "forget_quality" not in no_forget and "model_utility" in no_forget
    no_wf = summarise({k: v for k, v in SYNTHETIC.items() if k != "world_facts"})
    assert "model_utility" not in no_wf


# -------------------------------------------------------------------------------------- evaluate_tofu


def q(text: str) -> str:
    return f"Question: {text}\nAnswer:"


EVAL_ITEMS = {
    "forget": [
        PromptItem(q("Who is Harry Potter and where did he study at Hogwarts?"), answer="A wizard.",
                   paraphrased_answer="He is a wizard.", perturbed_answers=("A dog.", "A cat sat.", "The fox.")),
        PromptItem(q("Tell me a story."), answer="The fox jumps over the dog.",
                   paraphrased_answer="A fox jumps.", perturbed_answers=("The cat sleeps.", "Paris.")),
    ],
    "retain": [
        PromptItem(q("What is the capital of France?"), answer="Paris.",
                   paraphrased_answer="It is Paris.", perturbed_answers=("Scotland.", "Europe.")),
        PromptItem(q("Is the Hogwarts school in Scotland?"), answer="Yes, it is.",
                   paraphrased_answer="Yes.", perturbed_answers=("No.", "In France.", "Never.")),
    ],
    "real_authors": [
        PromptItem(q("Who wrote about magic and wizards for my friend, a long letter?"), answer="A friend.",
                   perturbed_answers=("A dog.", "A cat.", "The sun.")),
        PromptItem(q("Who wrote it?"), answer="Harry.", perturbed_answers=("Ron.", "Hermione.", "The fox.")),
    ],
    "world_facts": [
        PromptItem(q("Where is the Eiffel tower?"), answer="In Paris, France.", perturbed_answers=("In Scotland.", "On the mat.", "In the sun.")),
        PromptItem(q("What is 42?"), answer="A number.", perturbed_answers=("A letter.", "A city.", "A dog.")),
    ],
}
CONFIG = TofuEvalConfig(max_new_tokens=4, batch_size=3, chat=False)


def direct_nll(model: GuardedModel, prompt: str, continuation: str) -> float:
    return float(-model.score(prompt, " " + continuation, chat=False)[0].double().mean())


@pytest.fixture(scope="module")
def bare_eval(model, tok):
    return evaluate_tofu(GuardedModel(model, tok), EVAL_ITEMS, name="bare", config=CONFIG)


def test_evaluate_tofu_per_item_values_match_direct_scores(bare_eval, bare):
    assert list(bare_eval.items) == list(EVAL_SETS)
    generations = bare.generate([i.prompt for s in EVAL_SETS for i in EVAL_ITEMS[s]], max_new_tokens=4)
    k = 0
    for split in EVAL_SETS:
        assert len(bare_eval.items[split]) == 2
        for item, row in zip(EVAL_ITEMS[split], bare_eval.items[split]):
            assert row["question"] == item.prompt and row["answer"] == item.answer
            answer_nll = direct_nll(bare, item.prompt, item.answer)
            true = item.paraphrased_answer if split in ("forget", "retain") else item.answer
            true_nll = direct_nll(bare, item.prompt, true)
            perturbed = [direct_nll(bare, item.prompt, p) for p in item.perturbed_answers]
            assert row["answer_nll"] == pytest.approx(answer_nll, rel=1e-5)
            assert row["true_nll"] == pytest.approx(true_nll, rel=1e-5)
            assert row["perturbed_nll"] == pytest.approx(perturbed, rel=1e-5)
            assert row["prob"] == pytest.approx(math.exp(-answer_nll), rel=1e-5)
            assert row["prob_normalised"] == pytest.approx(
                math.exp(-answer_nll) / (math.exp(-answer_nll) + sum(math.exp(-p) for p in perturbed)), rel=1e-5
            )
            assert row["truth_ratio"] == pytest.approx(math.exp(true_nll - np.mean(perturbed)), rel=1e-5)
            assert row["generation"] == generations[k].strip()
            assert row["rouge_l_recall"] == rouge_l_recall(item.answer, row["generation"])
            assert row["flagged"] is False and row["targets"] == []
            k += 1
    # the truth ratio of forget/retain reads the paraphrased answer, not the answer
    forget = bare_eval.items["forget"][0]
    assert abs(forget["true_nll"] - forget["answer_nll"]) > 1e-4
    # world facts have no paraphrase: the same answer, scored in another batch (equal up to float error)
    assert bare_eval.items["world_facts"][0]["true_nll"] == pytest.approx(bare_eval.items["world_facts"][0]["answer_nll"], rel=1e-6)


def test_evaluate_tofu_summary_and_config(bare_eval):
    assert bare_eval.model == "bare"
    assert bare_eval.summary == summarise(bare_eval.items)
    assert bare_eval.summary["forget_flagged"] == 0.0 and "model_utility" in bare_eval.summary
    assert bare_eval.config == {"max_new_tokens": 4, "batch_size": 3, "chat": False, "shared_prefix": True, "generate": True}
    assert "model_utility_no_rouge" in bare_eval.summary


def test_evaluate_tofu_does_not_depend_on_batching(bare_eval, model, tok):
    """Items are sorted by length for batching: the values must come back to the right questions."""
    single = evaluate_tofu(GuardedModel(model, tok), EVAL_ITEMS, config=TofuEvalConfig(max_new_tokens=4, batch_size=1, chat=False))
    for split in EVAL_SETS:
        for a, b in zip(bare_eval.items[split], single.items[split]):
            assert a["question"] == b["question"] and a["generation"] == b["generation"]
            for key in ("answer_nll", "true_nll", "truth_ratio", "prob_normalised"):
                assert a[key] == pytest.approx(b[key], rel=1e-4), (split, key)


def test_flagged_reflects_the_guard_and_changes_only_flagged_scores(bare_eval, model, tok):
    guarded = GuardedModel(model, tok, make_guard(model, keywords=("Hogwarts",)))
    evaluation = evaluate_tofu(guarded, EVAL_ITEMS, name="eco", config=CONFIG)
    flags = {s: [r["flagged"] for r in evaluation.items[s]] for s in EVAL_SETS}
    assert flags == {"forget": [True, False], "retain": [False, True], "real_authors": [False, False], "world_facts": [False, False]}
    assert evaluation.items["forget"][0]["targets"] == ["hp"] and evaluation.items["forget"][1]["targets"] == []
    assert evaluation.summary["forget_flagged"] == 0.5 and evaluation.summary["retain_flagged"] == 0.5
    assert evaluation.summary["ra_flagged"] == 0.0
    for split in EVAL_SETS:
        for row, bare_row in zip(evaluation.items[split], bare_eval.items[split]):
            if row["flagged"]:
                assert abs(row["answer_nll"] - bare_row["answer_nll"]) > 1e-4  # a random model barely moves
            else:
                assert row["answer_nll"] == pytest.approx(bare_row["answer_nll"], rel=1e-5)
    # the corrupted scores are what the guarded model gives directly
    item = EVAL_ITEMS["forget"][0]
    assert evaluation.items["forget"][0]["answer_nll"] == pytest.approx(direct_nll(guarded, item.prompt, item.answer), rel=1e-5)


def test_evaluate_guarded_equals_the_full_evaluation_and_scores_only_flagged_prompts(bare_eval, model, tok, monkeypatch):
    """The rows of prompts the guard passes come from the bare evaluation; the whole equals evaluate_tofu's."""
    import eco_unlearn.bench.tofu.evaluate as evaluate_module

    guarded = GuardedModel(model, tok, make_guard(model, keywords=("Hogwarts",)))
    full = evaluate_tofu(guarded, EVAL_ITEMS, name="eco", retain_truth_ratios=[0.9, 1.1], config=CONFIG)
    scored, real = [], evaluate_module._evaluate_set
    monkeypatch.setattr(evaluate_module, "_evaluate_set", lambda m, split, items, *a: scored.append((split, len(items))) or real(m, split, items, *a))
    fast = evaluate_guarded(guarded, EVAL_ITEMS, bare_eval, name="eco", retain_truth_ratios=[0.9, 1.1], config=CONFIG)
    assert scored == [("forget", 1), ("retain", 1)]  # the one flagged prompt of each; nothing of the rest
    assert fast.config == full.config and fast.model == "eco"
    for split in EVAL_SETS:
        for a, b in zip(fast.items[split], full.items[split]):
            assert a["question"] == b["question"] and a["generation"] == b["generation"]
            assert (a["flagged"], a["targets"]) == (b["flagged"], b["targets"])
            for key in ("answer_nll", "true_nll", "truth_ratio", "prob_normalised"):
                assert a[key] == pytest.approx(b[key], rel=1e-4), (split, key)
    assert fast.summary == pytest.approx(full.summary, rel=1e-4)


def test_evaluate_guarded_refuses_a_bare_evaluation_of_other_items_or_settings(bare_eval, model, tok):
    from dataclasses import replace

    guarded = GuardedModel(model, tok, make_guard(model, keywords=("Hogwarts",)))
    with pytest.raises(TofuDataError, match="max_new_tokens.*evaluate the guarded model in full"):
        evaluate_guarded(guarded, EVAL_ITEMS, bare_eval, config=replace(CONFIG, max_new_tokens=5))
    other = {**EVAL_ITEMS, "retain": EVAL_ITEMS["retain"][::-1]}
    with pytest.raises(TofuDataError, match="retain questions are not these"):
        evaluate_guarded(guarded, other, bare_eval, config=CONFIG)


def test_evaluate_tofu_forget_quality_and_progress(model, tok):
    seen = []
    sets = {"forget": EVAL_ITEMS["forget"], "retain": EVAL_ITEMS["retain"]}
    evaluation = evaluate_tofu(
        GuardedModel(model, tok), sets, name="m", retain_truth_ratios=[0.9, 1.1, 1.0],
        config=CONFIG, progress=lambda what, done, total: seen.append((what, done, total)),
    )
    assert seen == [("m: forget", 0, 2), ("m: retain", 1, 2), ("m: done", 2, 2)]
    assert evaluation.summary["forget_quality"] == pytest.approx(stats.ks_2samp(evaluation.truth_ratios(), [0.9, 1.1, 1.0]).pvalue)
    assert "model_utility" not in evaluation.summary


def test_evaluate_tofu_chat_defaults_to_the_template(model, tok):
    assert tok.chat_template
    sets = {"world_facts": [PromptItem("Where is the Eiffel tower?", answer="In Paris.", perturbed_answers=("In Scotland.",))]}
    evaluation = evaluate_tofu(GuardedModel(model, tok), sets, config=TofuEvalConfig(max_new_tokens=2))
    assert evaluation.config["chat"] is True
    scored = GuardedModel(model, tok).score("Where is the Eiffel tower?", "In Paris.", chat=True)[0]  # no leading space
    assert evaluation.items["world_facts"][0]["answer_nll"] == pytest.approx(float(-scored.double().mean()), rel=1e-5)


def test_unknown_evaluation_set_is_refused(model, tok):
    with pytest.raises(ValueError, match="unknown TOFU evaluation set.*holdout"):
        evaluate_tofu(GuardedModel(model, tok), {"holdout": EVAL_ITEMS["forget"]}, config=CONFIG)


def test_evaluation_round_trips_through_json(bare_eval, tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(bare_eval.to_dict()))
    loaded = TofuEvaluation.from_dict(json.loads(path.read_text()))
    assert loaded == bare_eval
    assert loaded.truth_ratios() == [r["truth_ratio"] for r in bare_eval.items["forget"]]
    assert loaded.truth_ratios("retain") == [r["truth_ratio"] for r in bare_eval.items["retain"]]
    assert summarise(loaded.items) == bare_eval.summary  # every statistic can be recomputed from the JSON
    legacy = {k: v for k, v in bare_eval.to_dict().items() if k != "config"}
    assert TofuEvaluation.from_dict(legacy).config == {}


# ---------------------------------------------------------------------------------------------- report


TARGET = {"forget_Q_A_ROUGE": 0.9, "forget_quality": 1e-5, "model_utility": 0.5}
ECO = {"forget_Q_A_ROUGE": 0.1, "forget_quality": 0.5, "model_utility": 0.5}


def test_check_floors_passes_a_good_run():
    checks = check_floors(TARGET, ECO)
    assert checks["passed"] == {"target_learned": True, "target_distinguishable": True, "eco_forget_quality": True, "eco_utility": True}
    assert checks["target_forget_rouge"] == 0.9 and checks["target_forget_quality"] == 1e-5
    assert checks["eco_forget_quality"] == 0.5 and checks["eco_utility_ratio"] == 1.0


@pytest.mark.parametrize(
    "target,eco,check,passed",
    [
        ({"forget_Q_A_ROUGE": 0.6}, {}, "target_learned", True),  # boundaries are inclusive for minima
        ({"forget_Q_A_ROUGE": 0.5999}, {}, "target_learned", False),
        ({"forget_quality": 0.0099}, {}, "target_distinguishable", True),
        ({"forget_quality": 0.01}, {}, "target_distinguishable", False),  # strictly below the maximum
        ({"forget_quality": 0.0}, {}, "target_distinguishable", True),  # perfectly distinguishable
        ({"forget_quality": None}, {}, "target_distinguishable", False),  # unknown is not a pass
        ({}, {"forget_quality": 0.1}, "eco_forget_quality", True),
        ({}, {"forget_quality": 0.0999}, "eco_forget_quality", False),
        ({}, {"forget_quality": None}, "eco_forget_quality", False),
        ({}, {"forget_quality": 0.0}, "eco_forget_quality", False),
        ({}, {"model_utility": 0.49}, "eco_utility", True),  # ratio exactly 0.98
        ({}, {"model_utility": 0.4899}, "eco_utility", False),
        ({}, {"model_utility": 0.7}, "eco_utility", True),  # better than the target is fine
        ({"model_utility": 0.0}, {}, "eco_utility", False),  # no ratio without a target utility
    ],
)
def test_check_floors_boundaries(target, eco, check, passed):
    checks = check_floors({**TARGET, **target}, {**ECO, **eco})
    assert checks["passed"][check] is passed
    others = {k: v for k, v in checks["passed"].items() if k != check}
    assert all(others.values())  # only the check under test moved


def test_check_floors_without_forget_quality_or_utility():
    target = {"forget_Q_A_ROUGE": 0.9, "model_utility": 0.5}
    checks = check_floors(target, {"model_utility": 0.5})
    assert checks["target_forget_quality"] is None and checks["eco_forget_quality"] is None
    assert checks["passed"]["target_distinguishable"] is False and checks["passed"]["eco_forget_quality"] is False
    no_utility = check_floors({"forget_Q_A_ROUGE": 0.9}, ECO)
    assert no_utility["eco_utility_ratio"] is None and no_utility["passed"]["eco_utility"] is False
    json.dumps(checks)  # goes into report.json


def test_floors_are_the_project_floors():
    assert FLOORS == {
        "target_forget_rouge_min": 0.6, "target_forget_quality_max": 0.01,
        "eco_forget_quality_min": 0.1, "eco_utility_ratio_min": 0.98,
    }


def test_summary_rows_have_every_column_and_none_where_missing():
    table = summary_rows({"retain": {"forget_quality": 1.0, "model_utility": 0.4}, "target": {"model_utility": 0.5, "extra": 3}})
    assert [r["model"] for r in table] == ["retain", "target"]
    assert all(set(r) == {"model", *(k for k, _ in COLUMNS)} for r in table)
    assert table[0]["forget_quality"] == 1.0 and table[1]["forget_quality"] is None and "extra" not in table[1]


SUMMARIES = {
    "retain": {"forget_quality": 1.0, "model_utility": 0.40},
    "target": {"forget_quality": 0.0, "model_utility": 0.42},  # zero is drawn at the bottom of the log axis
    "eco": {"forget_quality": 0.3, "model_utility": 0.41},
    "partial": {"model_utility": 0.3},
    "other": {"forget_quality": 0.2},
}


def test_plot_tradeoff_writes_a_png_and_skips_models_without_both_numbers(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    real = Axes.annotate
    monkeypatch.setattr(Axes, "annotate", lambda self, text, *a, **k: drawn.append(text) or real(self, text, *a, **k))
    path = plot_tradeoff(SUMMARIES, tmp_path / "plots" / "tofu.png", title="TOFU test")
    assert path == tmp_path / "plots" / "tofu.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert drawn == ["retain", "target", "eco"]
    assert [p.name for p in path.parent.iterdir()] == ["tofu.png"]  # no temporary file left


def test_plot_tradeoff_replaces_atomically_and_keeps_the_old_plot_on_failure(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "tofu.png"
    path.write_bytes(b"old plot")
    plot_tradeoff(SUMMARIES, path)
    first = path.read_bytes()
    assert first.startswith(b"\x89PNG")

    def broken(self, *args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        plot_tradeoff({"eco": {"forget_quality": 0.9, "model_utility": 0.9}}, path)
    assert path.read_bytes() == first and [p.name for p in tmp_path.iterdir()] == ["tofu.png"]


def test_plot_tradeoff_with_nothing_to_draw_still_writes_a_png(tmp_path):
    path = plot_tradeoff({"partial": {"model_utility": 0.3}}, str(tmp_path / "empty.png"))
    assert path.read_bytes().startswith(b"\x89PNG")
