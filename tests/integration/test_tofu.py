"""TOFU end to end with the real SmolLM2, MiniLM and data files, through the CLI, at smoke-test size:
one retain author, one epoch, three questions per evaluation set."""

from __future__ import annotations

import json
import os

import pytest

from eco_unlearn import Guard, IncompatibleGuardError
from eco_unlearn.models import cache_dir

SMOKE = ("--authors", "1", "--epochs", "1", "--limit", "3")


@pytest.fixture(scope="module")
def tofu_cache(tmp_path_factory):
    """A fresh cache for the fine-tuned models that shares the converted base models with the user cache,
    so every test run fine-tunes again instead of finding last run's models."""
    root = tmp_path_factory.mktemp("cache")
    cache_dir().joinpath("models").mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def tofu_cli(cli, tofu_cache):
    previous = os.environ.get("ECO_UNLEARN_CACHE")
    os.environ["ECO_UNLEARN_CACHE"] = str(tofu_cache)
    try:
        yield cli
    finally:
        if previous is None:
            os.environ.pop("ECO_UNLEARN_CACHE")
        else:
            os.environ["ECO_UNLEARN_CACHE"] = previous


@pytest.fixture(scope="module")
def tofu_run(tofu_cli, tofu_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tofu") / "results"
    result = tofu_cli(
        "tofu", "run", "--data-dir", str(tofu_dir), "--out", str(out), *SMOKE,
        "--budget", "2", "--max-new-tokens", "8", timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def test_run_writes_every_result_and_a_guard_that_fires_on_the_forget_authors(tofu_run, smollm2):
    result, out = tofu_run
    report = json.loads((out / "report.json").read_text())
    assert set(report["summaries"]) == {"retain", "target", "eco"}
    for name in ("retain", "target", "eco"):
        evaluation = json.loads((out / f"{name}.json").read_text())
        assert {k: len(v) for k, v in evaluation["items"].items()} == {"forget": 3, "retain": 3, "real_authors": 3, "world_facts": 3}
        summary = report["summaries"][name]
        assert 0.0 <= summary["forget_quality"] <= 1.0 and 0.0 <= summary["model_utility"] <= 1.0
    assert report["summaries"]["retain"]["forget_quality"] == 1.0  # the retain model against itself
    eco = report["summaries"]["eco"]
    assert eco["forget_flagged"] == 1.0  # the forget authors' names are keywords of the classifier
    # unflagged questions are answered and scored exactly as by the target (the smoke-sized classifier, trained
    # on one retain author, may flag some real-author questions; those are corrupted and so may differ)
    target_items = json.loads((out / "target.json").read_text())["items"]
    eco_items = json.loads((out / "eco.json").read_text())["items"]
    unflagged = 0
    for split, rows in eco_items.items():
        for eco_row, target_row in zip(rows, target_items[split]):
            if not eco_row["flagged"]:
                unflagged += 1
                assert eco_row["generation"] == target_row["generation"]
                assert eco_row["answer_nll"] == pytest.approx(target_row["answer_nll"], rel=1e-5)
    assert unflagged >= 6  # the retain and world-fact questions at least
    assert set(report["fit"]["classifier_entities"]) == {"Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"}
    assert report["fit"]["paraphrased_recall"] >= 0.9
    assert report["training"]["target"]["examples"] == 60 and report["training"]["retain"]["examples"] == 20
    assert (out / "tofu.png").read_bytes().startswith(b"\x89PNG")
    guard = Guard.load(out / "guard")
    # entities first, all-but-last only when the entities miss the search's target; the better of the two is kept
    tried = report["fit"]["report"]["token_candidates"]
    assert tried[0]["tokens"]["strategy"] == "entities" and len(tried) == (1 if tried[0]["met"] else 2)
    chosen = tried[0] if tried[0]["met"] else max(tried, key=lambda t: t["value"])
    assert guard.targets[0].tokens.to_dict() == chosen["tokens"]
    assert guard.targets[0].corruption.strength == pytest.approx(chosen["strength"])
    with pytest.raises(IncompatibleGuardError):  # fitted on the fine-tuned target, so the base model is refused
        guard.check_model(smollm2[0])
    assert "forget quality" in result.stdout and "ECO forget quality" in result.stdout


def test_prepare_reuses_the_cached_models(tofu_run, tofu_cli, cli_main, tofu_dir):
    # in this process, through the entry point (with tofu_cli's cache): tofu run ran in a real one
    result = cli_main("tofu", "prepare", "--data-dir", str(tofu_dir), "--authors", "1", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("cached") == 2


def test_eval_scores_the_guarded_target_against_the_retain_reference(tofu_run, tofu_cli, tofu_dir, tmp_path):
    _, out = tofu_run
    report = json.loads((out / "report.json").read_text())
    saved = tmp_path / "eco.json"
    result = tofu_cli(  # a real process: in this one it took 120 s instead of 11 (not understood yet)
        "tofu", "eval", "--model", report["files"]["target_model"], "--guard", str(out / "guard"),
        "--reference", str(out / "retain.json"), "--data-dir", str(tofu_dir), "--authors", "1", "--limit", "3",
        "--max-new-tokens", "8", "--out", str(saved),
    )
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(saved.read_text())
    # the same guarded model on the same questions gives the run's numbers again
    assert evaluation["summary"]["forget_quality"] == pytest.approx(report["summaries"]["eco"]["forget_quality"])
    assert evaluation["summary"]["forget_Q_A_Prob"] == pytest.approx(report["summaries"]["eco"]["forget_Q_A_Prob"], rel=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (("tofu", "run", "--data-dir", "/nonexistent/tofu"), "no TOFU data"),
        (("tofu", "run", "--preset", "forget02"), "unknown TOFU preset"),
        (("tofu", "eval", "--model", "smollm2", "--reference", "/nonexistent.json", "--limit", "1"), "does not exist"),
        (("tofu", "sweep", "--strengths", "1,x"), "comma-separated numbers"),
        (("tofu", "sweep", "--strengths", "3,-1"), "strengths must be a non-empty list of finite values >= 0"),
        (("tofu", "compare", "--holdout", "holdout99"), "holdout must be one of holdout01, holdout05, holdout10"),
    ],
)
def test_bad_input_is_one_clear_line(tofu_cli, cli_main, tofu_dir, args, message):
    if "--data-dir" not in args:
        args = (*args, "--data-dir", str(tofu_dir))
    result = cli_main(*args)  # with tofu_cli's cache
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_input_in_a_real_process_is_one_clear_line(tofu_cli, tofu_dir):
    result = tofu_cli("tofu", "sweep", "--strengths", "1,x", "--data-dir", str(tofu_dir))
    assert result.returncode == 2
    assert "comma-separated numbers" in result.stderr and "Traceback" not in result.stderr
