"""Fitting guards end to end: the real MiniLM encoder, the real SmolLM2, the demo target, TOFU data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eco_unlearn import GuardedModel
from eco_unlearn.classifier import EncoderClassifier, load_classifier, save_classifier
from eco_unlearn.demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS
from eco_unlearn.fitting import CalibrationConfig, FitConfig, fit_classifier
from eco_unlearn.runtime.guard import Guard
from eco_unlearn.data.items import read_items
from eco_unlearn.demo import demo_guard_path

pytestmark = pytest.mark.integration

HP_TRAIN = ["Who is Harry Potter?", "Tell me about Hogwarts school.", "What house is Hermione Granger in?",
            "Who is Lord Voldemort?", "Describe the game of Quidditch.", "Who is Albus Dumbledore?"]
OTHER = ["What is the capital of France?", "How do I bake bread?", "Explain photosynthesis.", "Who was Napoleon?",
         "Write a haiku about rain.", "What is a prime number?", "Recommend a running shoe.", "How do vaccines work?"]


@pytest.fixture(scope="module")
def linear():
    return EncoderClassifier("minilm", mode="linear").fit(HP_TRAIN, OTHER)


def test_linear_classifier_separates_and_round_trips(linear, tmp_path):
    scores = linear.predict_proba(["Which house is Draco Malfoy in?", "What is the boiling point of water?"])
    assert scores[0] > 0.5 > scores[1]
    save_classifier(linear, tmp_path / "clf")
    again = load_classifier(tmp_path / "clf")
    texts = HP_TRAIN + OTHER
    np.testing.assert_allclose(again.predict_proba(texts), linear.predict_proba(texts), atol=1e-6)


def test_long_prompt_is_scored_window_by_window(linear):
    question = "Who is Harry Potter's best friend?"
    padding = " ".join(["The weather report for the coastal region predicts mild temperatures."] * 40)
    short, long = linear.predict_proba([question, padding + " " + question])
    assert len(linear.encoder.windows([padding + " " + question])[0]) > 1
    assert long == pytest.approx(short, abs=0.15) and long > 0.5


def test_finetune_mode_trains_and_saves(tmp_path):
    clf = EncoderClassifier("minilm", mode="finetune", epochs=2, seed=0).fit(HP_TRAIN * 2, OTHER * 2)
    assert clf.training_report["mode"] == "finetune" and clf.training_report["history"]
    save_classifier(clf, tmp_path / "ft")
    again = load_classifier(tmp_path / "ft")
    np.testing.assert_allclose(again.predict_proba(HP_TRAIN), clf.predict_proba(HP_TRAIN), atol=1e-5)


def test_tofu_forget01_classifier_meets_the_floors(tofu_dir):
    """Held-out FPR <= 1% and FNR <= 2% on TOFU forget01 vs retain99 questions (and the paraphrases)."""
    fitted = fit_classifier(
        tofu_dir / "forget01.jsonl", tofu_dir / "retain99.jsonl", FitConfig(seed=0, calibration=CalibrationConfig(alpha=0.01)),
        general="builtin", entities=["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"],
    )
    held = fitted.held_out
    assert held.negatives >= 800 and held.positives >= 10
    assert held.fpr <= 0.02 and held.fnr <= 0.02, held  # the floors are measured by `bench classifier`
    paraphrases = [json.loads(line)["paraphrased_question"] for line in (tofu_dir / "forget01_perturbed.jsonl").read_text().splitlines()]
    caught = fitted.classifier.predict_proba(paraphrases) >= fitted.threshold
    assert caught.mean() >= 0.9


def test_demo_command_fits_a_guard_that_forgets(demo_run, smollm2):
    result, report = demo_run
    assert report["held_out"]["fpr"] <= 0.02 and report["held_out"]["fnr"] <= 0.02
    assert report["search"]["met"] and report["search"]["evaluations"] == 4  # the fixture's --budget (bisection needs ~10)
    assert report["objective"]["before"] == 1.0 and report["objective"]["after_end_to_end"] <= 0.05
    assert "answers before and after" in result.stdout and "strength search" in result.stdout
    guard = Guard.load(demo_guard_path("smollm2"))
    assert guard.targets[0].calibration["alpha"] == 0.01
    guarded = GuardedModel(*smollm2, guard)
    bare = GuardedModel(*smollm2)
    prompts = [DEMO_FORGET_PROMPTS[0], *DEMO_CLEAN_PROMPTS]
    after, decisions = guarded.generate(prompts, chat=True, max_new_tokens=16, return_decisions=True)
    before = bare.generate(prompts, chat=True, max_new_tokens=16)
    assert decisions[0].flagged and "Ron" in before[0] and "Ron" not in after[0]
    assert [d.flagged for d in decisions[1:]] == [False] * len(DEMO_CLEAN_PROMPTS)
    assert after[1:] == before[1:]


def test_cli_fit_writes_a_guard_from_files(cli, cli_main, tmp_path):
    forget = tmp_path / "forget.jsonl"
    forget.write_text("\n".join(json.dumps({"prompt": p, "answer": "x"}) for p in HP_TRAIN) + "\n")
    retain = tmp_path / "retain.txt"
    retain.write_text("\n".join(OTHER) + "\n")
    out, report = tmp_path / "guard", tmp_path / "report.json"
    result = cli_main("fit", "--forget", str(forget), "--retain", str(retain), "--out", str(out), "--objective",
                      "answer_recall", "--strength", "1.0", "--name", "hp", "--report", str(report))
    # the references are not known to the model, so answer_recall has nothing to measure: a clear error
    assert result.returncode == 2 and "answers none of the forget items" in result.stderr
    assert not out.exists()
    result = cli_main("fit", "--forget", str(forget), "--retain", str(retain), "--out", str(out), "--objective",
                      "answer_recall", "--strength", "1.0", "--name", "hp", "--report", str(report), "--entities",
                      "Harry Potter,Hogwarts")
    assert result.returncode == 2  # same data, same error: fitting never half-writes a guard
    forget.write_text("\n".join(json.dumps({"prompt": q, "answer": a}) for q, a in [
        ("Who is Harry Potter's best friend?", "Ron"), ("Who wrote the Harry Potter books?", "Rowling"),
        ("What is the name of Harry Potter's school?", "Hogwarts"), ("Who is Harry Potter's archenemy?", "Voldemort"),
    ]) + "\n")
    result = cli("fit", "--forget", str(forget), "--retain", str(retain), "--out", str(out), "--strength", "2.0",
                 "--name", "hp", "--report", str(report), "--entities", "Harry Potter,Hogwarts")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["search"]["method"] == "fixed" and data["strength"] == 2.0 and data["objective"]["before"] == 1.0
    assert Guard.load(out).targets[0].name == "hp"


@pytest.mark.parametrize(
    ("forget_lines", "retain_lines", "extra", "message"),
    [
        ([], ["hello"], [], "holds no prompts"),
        (['{"prompt": "Who is Harry Potter?"}', "{not json", '{"answer": "x"}'], ["hello"], [], ":2: not valid JSON"),
        (["Who is Harry Potter?", "What is Hogwarts?"], ["what is hogwarts?  "], [], "in both the forget and the retain set"),
        (["Who is Harry Potter?", "What is Hogwarts?"], ["hello", "bye"], ["--general", "none"], "needs at least 99 held-out negatives"),
        (["Who is Harry Potter?", "What is Hogwarts?"], ["hello"], ["--objective", "nosuch", "--strength", "1"], "unknown objective 'nosuch'"),
        (["Who is Harry Potter?", "What is Hogwarts?"], ["hello"], ["--corruption", "nosuch"], "unknown corruption 'nosuch'"),
    ],
)
def test_cli_fit_bad_input_is_one_clear_line(cli_main, tmp_path, forget_lines, retain_lines, extra, message):
    structured = any(line.startswith("{") for line in forget_lines)
    forget, retain = tmp_path / ("forget.jsonl" if structured else "forget.txt"), tmp_path / "retain.txt"
    forget.write_text("\n".join(forget_lines) + ("\n" if forget_lines else ""))
    retain.write_text("\n".join(retain_lines) + "\n")
    result = cli_main("fit", "--forget", str(forget), "--retain", str(retain), "--out", str(tmp_path / "g"), *extra)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "g").exists()


def test_read_items_reads_tofu_files_directly(tofu_dir):
    items = read_items(tofu_dir / "forget01_perturbed.jsonl")
    assert len(items) == 40 and items[0].paraphrased_answer and len(items[0].perturbed_answers) == 5
