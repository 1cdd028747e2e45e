"""The MMLU-subset experiment end to end, as the README runs it, on a tiny random Llama saved to a folder and
a tiny MMLU-format folder written here (five subjects of 12 test and 2 dev questions, the economics
setting's subjects and two others): ``run_mcq`` with the real MiniLM guard fit, its report, table and
caches, resuming, refitting, the CLI (``mcq run|subjects|lm-eval`` and bad input) and the lm-eval check."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from eco_unlearn import GuardedModel, load_model
from eco_unlearn.bench.mcq import (
    FLOORS, SETTINGS, McqRunConfig, SampleSizes, by_subject, guard_items, header, markdown_table, question_key,
    run_mcq, score_questions, scored_questions, write_results,
)
from eco_unlearn.bench.mcq.stats import independent_guess_accuracy
from eco_unlearn.data.mmlu import load_mmlu
from eco_unlearn.errors import DatasetError
from eco_unlearn.io import folder_digest
from test_cli import assert_one_error_line

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from unit_helpers import build_model, build_tokenizer, make_guard  # noqa: E402

pytestmark = pytest.mark.integration

ECONOMICS = SETTINGS.get("economics")
SUBJECTS = {  # subject: words its synthetic questions are about
    "high_school_macroeconomics": ("inflation", "unemployment", "fiscal policy", "the money supply"),
    "high_school_microeconomics": ("marginal cost", "price elasticity", "monopoly pricing", "consumer surplus"),
    "econometrics": ("regression", "heteroskedasticity", "instrumental variables", "autocorrelation"),
    "astronomy": ("the Moon", "a red giant", "Jupiter", "a comet"),
    "world_religions": ("a pilgrimage", "a monastery", "a scripture", "a festival"),
}
SIZES = SampleSizes(focus=4, other=2)  # 8 forget, 4 related, 4 other questions scored
SMALL = ("--focus-per-subject", "4", "--other-per-subject", "2", "--batch-size", "4")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny Llama in Hugging Face format, its tokenizer trained to hold " A" ... " D" as one token each
    (as Gemma's does, so lm-eval's " A" continuation is eco-unlearn's letter token), 512 positions."""
    tok = build_tokenizer(extra=["Answer: A. Answer: B. Answer: C. Answer: D."] * 20)
    assert all(len(tok(f" {c}", add_special_tokens=False)["input_ids"]) == 1 for c in "ABCD")
    path = tmp_path_factory.mktemp("tiny-mcq-llama")
    build_model(tok, context=512).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """``mmlu/{test,dev}.jsonl`` in the shared data's layout, with synthetic harmless questions."""
    root = tmp_path_factory.mktemp("mmlu-data")
    (root / "mmlu").mkdir()
    for split, n in (("test", 12), ("dev", 2)):
        rows = [{"question": f"{split} question {i}: what is true of {words[i % 4]} (case {i})?",
                 "choices": [f"{words[(i + j) % 4]}, claim {j}" for j in range(4)], "answer": (i * 7 + len(s)) % 4,
                 "subject": s} for s, words in SUBJECTS.items() for i in range(n)]
        (root / "mmlu" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _config(tiny_dir: Path, data_dir: Path, out: Path, **changes) -> McqRunConfig:
    return McqRunConfig(ECONOMICS, model=str(tiny_dir), data_dir=data_dir, output=out,
                        **{"sizes": SIZES, "strength_items": 4, "budget": 3, "batch_size": 4, **changes})


def _steps(into: list[str]):
    return lambda what, done, total: into.append(what)


def _cache_dir(config: McqRunConfig) -> Path:
    return Path(config.output) / "cache" / config.model.replace("/", "_")


def _read_cache(path: Path) -> dict[tuple[str, str], dict]:
    return {(r["key"], r["method"]): r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def first_run(tiny_dir, data_dir, tmp_path_factory):
    """``run_mcq`` once (bare scores, the MiniLM guard fit, guarded scores) and ``write_results``."""
    config = _config(tiny_dir, data_dir, tmp_path_factory.mktemp("mcq-out"))
    steps: list[str] = []
    report = run_mcq(config, progress=_steps(steps))
    return config, report, write_results(report, str(config.output)), steps


def _scored(config: McqRunConfig):
    return scored_questions(by_subject(load_mmlu("test", data_dir=config.data_dir)), config.setting, config.sizes)


def test_report_json_and_table(first_run):
    config, report, paths, steps = first_run
    assert "training the classifier" in steps and any(s.endswith(": scoring") for s in steps)
    data = json.loads(Path(paths["json"]).read_text())
    assert data["benchmark"] == "mcq" and data["setting"]["name"] == "economics" and data["model"] == config.model
    assert data["sizes"] == {"focus": 4, "other": 2, "seed": 0} and data["seed"] == 0 and data["strength"] > 0
    assert data["model_fingerprint"] and data["environment"] and data["fit"]["held_out"]
    groups = {(g["method"], g["group"]): g for g in data["groups"]}
    assert set(groups) == {(m, g) for m in ("letters", "cloze") for g in ("forget", "related", "other")}
    n = {"forget": 8, "related": 4, "other": 4}
    for (method, group), g in groups.items():
        assert g["original"]["n"] == g["guarded"]["n"] == g["flagged"]["n"] == n[group] and g["chance"] == 0.25
        for which in ("original", "guarded"):
            acc = g[which]
            assert acc["value"] == acc["correct"] / acc["n"] and acc["low"] <= acc["value"] <= acc["high"]
            assert 0 <= g[f"{which}_independent"] <= 1
        flags = g["flagged"]
        assert flags["rate"] == flags["flagged"] / flags["n"] and flags["should_flag"] == (group == "forget")
        if group == "forget":
            assert flags["fpr"] is None and flags["fnr"] == 1 - flags["rate"]
            floor = abs(g["guarded"]["value"] - 0.25) <= FLOORS["forget"]
        else:
            assert flags["fnr"] is None and flags["fpr"] == flags["rate"]
            floor = abs(g["guarded"]["value"] - g["original"]["value"]) <= FLOORS[group]
        assert g["floor_met"] is floor
    # the subject header makes the classes easy: every forget question flagged, no other one
    assert [groups[(m, "forget")]["flagged"]["fnr"] for m in ("letters", "cloze")] == [0.0, 0.0]
    assert all(g["flagged"]["fpr"] == 0.0 for (_, group), g in groups.items() if group != "forget")
    assert {s: row["role"] for s, row in data["subjects"].items()} == {s: ECONOMICS.role(s) for s in SUBJECTS}
    assert Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = Path(paths["table"]).read_text()
    assert table == markdown_table(report)
    header_row, _, *rows = table.splitlines()
    assert header_row.count("indep. %") == 2 and len(rows) == 6
    for row, g in zip(rows, data["groups"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == [g["method"], g["group"], str(g["original"]["n"])]
        assert cells[3].startswith(f"{100 * g['original']['value']:.1f} [")
        assert cells[4] == f"{100 * g['original_independent']:.1f}"
        assert cells[6] == f"{100 * g['guarded_independent']:.1f}"
        assert cells[8] == f"{100 * g['flagged']['rate']:.1f}" and cells[9] == ("met" if g["floor_met"] else "missed")


def test_report_numbers_are_the_caches(first_run):
    config, report, paths, _ = first_run
    guard_dir = Path(config.output) / "guard-economics"
    original = _read_cache(_cache_dir(config) / "original.jsonl")
    guarded = _read_cache(_cache_dir(config) / f"guarded-economics-{folder_digest(guard_dir)}.jsonl")
    questions = _scored(config)
    assert len(questions) == 16
    pick = lambda row: max(range(len(row["scores"])), key=row["scores"].__getitem__)  # noqa: E731
    for g in json.loads(Path(paths["json"]).read_text())["groups"]:
        members = [q for q in questions if ECONOMICS.role(q.subject) == g["group"]]
        for which, cache in (("original", original), ("guarded", guarded)):
            rows = [cache[(question_key(q), g["method"])] for q in members]
            assert g[which]["correct"] == sum(pick(r) == q.answer for r, q in zip(rows, members))
            assert g[which + "_independent"] == pytest.approx(
                independent_guess_accuracy([pick(r) for r in rows], [q.answer for q in members]))
        assert g["flagged"]["flagged"] == sum(guarded[(question_key(q), g["method"])]["flagged"] for q in members)
    for key, row in guarded.items():  # unflagged prompts take the bare scores; flagged ones were run again
        assert not original[key]["flagged"]
        if not row["flagged"]:
            assert row["scores"] == original[key]["scores"]


def test_no_scored_question_is_trained_on(first_run):
    config, report, _, _ = first_run
    groups = by_subject(load_mmlu("test", data_dir=config.data_dir))
    dev = load_mmlu("dev", data_dir=config.data_dir)
    forget, retain = guard_items(groups, dev, ECONOMICS, SIZES, config.negatives_per_other)
    splits = report.fit["splits"]  # what the fit was given is what guard_items returns
    assert splits["forget_train"] + splits["forget_test"] == len(forget) == 2 * 2 + 2 * 8
    assert splits["retain"] == len(retain) == 3 * 2 + 8 + 2 * 4
    trained = {item.prompt for item in forget + retain}
    scored = _scored(config)
    assert not trained & {header(q) + q.question.strip() for q in scored}
    assert not {p.split("\n\n", 1)[1] for p in trained} & {q.question for q in scored}


def test_a_second_run_rescores_nothing_and_a_refit_gets_its_own_cache(first_run, tmp_path):
    config, report, _, _ = first_run
    cache_dir = _cache_dir(config)
    before = {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()}
    steps: list[str] = []
    again = run_mcq(config, progress=_steps(steps))
    assert not any(s.endswith(": scoring") for s in steps) and "training the classifier" not in steps
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.iterdir()} == before
    measured = lambda r: [(g.original, g.guarded, g.flagged) for g in r.groups]  # noqa: E731
    assert measured(again) == measured(report)
    # a refit (another seed, into a copy of the results) gets a new guarded cache; the bare one is reused
    out = tmp_path / "copy"
    shutil.copytree(config.output, out)
    with pytest.raises(DatasetError, match="fitted for another split of the questions"):  # it trained on some of these
        run_mcq(_config(Path(config.model), Path(config.data_dir), out, sizes=SampleSizes(focus=5, other=2)))
    shutil.rmtree(out / "guard-economics")
    refit = _config(Path(config.model), Path(config.data_dir), out, seed=1)
    steps.clear()
    run_mcq(refit, progress=_steps(steps))
    assert "training the classifier" in steps
    assert not any(s.endswith(": scoring") for s in steps[: steps.index("training the classifier")])
    names = sorted(p.name for p in _cache_dir(refit).iterdir())
    assert len(names) == 3 and names[-1] == "original.jsonl" and set(before) < set(names)
    assert f"guarded-economics-{folder_digest(out / 'guard-economics')}.jsonl" in names


@pytest.fixture(scope="module")
def nothing_flagged(first_run, tmp_path_factory):
    """A copy of the first run's results whose guard is a keyword guard that flags nothing, run again."""
    config, _, _, _ = first_run
    out = tmp_path_factory.mktemp("mcq-nothing-flagged") / "out"
    shutil.copytree(config.output, out)
    shutil.rmtree(out / "guard-economics")
    model, _ = load_model(config.model)
    make_guard(model, keywords=("no such words in any question",)).save(out / "guard-economics")
    copy = _config(Path(config.model), Path(config.data_dir), out)
    steps: list[str] = []
    return copy, run_mcq(copy, progress=_steps(steps)), steps


def test_a_guard_that_flags_nothing_reuses_every_bare_score(nothing_flagged):
    _, report, steps = nothing_flagged
    assert not any(s.endswith(": scoring") for s in steps) and "training the classifier" not in steps
    for g in report.groups:
        assert g.flagged.flagged == 0 and g.guarded == g.original


def config_questions(config):
    from eco_unlearn.bench.mcq.experiment import saved_scores

    return saved_scores(config)[0]


def test_lm_eval_check_matches_eco_unlearn_when_nothing_is_flagged(nothing_flagged):
    from eco_unlearn.bench.mcq.lmeval_run import run_lm_eval_check

    pytest.importorskip("lm_eval")
    config, report, _ = nothing_flagged
    result = run_lm_eval_check(config, timing_questions=2, repeats=1)
    assert result["agreement"] == {"hf_vs_original": 1.0, "eco_vs_guarded": 1.0}
    folder = Path(config.output) / "lm-eval-economics"
    hf, eco = (json.loads((folder / f"{which}-predictions.json").read_text())["predictions"] for which in ("hf", "eco"))
    assert hf == eco and len(hf) == len(config_questions(config))  # every scored question, other subjects too
    rows = {r["role"]: r for r in result["rows"]}
    assert set(rows) == {"forget", "related", "other"}
    for row in rows.values():
        assert row["lm_eval_hf"] == row["eco_unlearn_original"] == row["lm_eval_eco"] == row["eco_unlearn_guarded"]
    timing = result["timing_nothing_flagged"]
    assert timing["questions"] == 2 and [len(timing["seconds"][m]) for m in ("hf", "eco")] == [1, 1]
    assert timing["ratio"] == pytest.approx(sum(timing["seconds"]["eco"]) / sum(timing["seconds"]["hf"]))
    assert json.loads((Path(config.output) / "economics-lm-eval.json").read_text())["agreement"] == result["agreement"]


def test_lm_eval_scores_the_letter_tokens_eco_unlearn_scores_when_space_led_letters_split(first_run, tmp_path):
    """A tokenizer with " A" as two tokens: eco-unlearn scores the bare letter "A" after ``Answer:``, and the
    lm-eval tasks continue the prompt with "A" too: the choices' log-likelihoods differ as the letters'
    logits do (with " A" they would differ by the log-probabilities of the letters after the space)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from eco_unlearn.bench.mcq import letter_prefix, task_name, write_lm_eval_tasks
    from eco_unlearn.bench.mcq.lmeval_run import lm_eval_predictions

    tok = build_tokenizer()
    assert len(tok(" A", add_special_tokens=False)["input_ids"]) == 2 and letter_prefix(tok) == ""
    model = build_model(tok, context=512)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    tok.save_pretrained(tmp_path / "model")
    questions = _scored(first_run[0])
    letters = score_questions(GuardedModel(model, tok), questions, methods=("letters",), batch_size=4)["letters"]
    tasks = write_lm_eval_tasks(questions, tmp_path / "direct", letter_prefix(tok))
    args = f"pretrained={tmp_path / 'model'},device=cpu,dtype=float32,batch_size=4"
    manager = TaskManager(include_path=str(tmp_path / "direct"), include_defaults=False)
    out = simple_evaluate(model="hf", model_args=args, tasks=tasks, task_manager=manager, log_samples=True,
                          bootstrap_iters=0)
    for subject in SUBJECTS:
        members = [q for q in questions if q.subject == subject]
        for sample in out["samples"][task_name(subject)]:
            loglik = [float(r[0][0]) for r in sample["resps"]]
            logits = letters[question_key(members[sample["doc_id"]])].scores
            assert [x - loglik[0] for x in loglik] == pytest.approx([x - logits[0] for x in logits], abs=1e-3)
    predictions, _ = lm_eval_predictions(str(tmp_path / "model"), questions, tmp_path / "tasks", batch_size=4)
    assert 'target_delimiter: ""' in (tmp_path / "tasks" / f"{task_name('astronomy')}.yaml").read_text()
    assert predictions == {key: score.prediction for key, score in letters.items()}


def test_cli_run_subjects_and_lm_eval(cli_main, tiny_dir, data_dir, tmp_path):
    common = ("--model", str(tiny_dir), "--data-dir", str(data_dir), "--out", str(tmp_path))
    ran = cli_main("mcq", "run", "--setting", "economics", *common, *SMALL, "--strength-items", "4", "--budget", "3")
    assert ran.returncode == 0, ran.stderr
    assert "| letters | forget | 8 |" in ran.stdout and f"wrote {tmp_path / 'economics.json'}" in ran.stdout
    written = {p.name for p in tmp_path.iterdir()}
    assert {"economics.json", "economics.png", "economics.md", "guard-economics"} <= written
    other_split = cli_main("mcq", "run", "--setting", "economics", *common, "--focus-per-subject", "5")
    assert_one_error_line(other_split, "was fitted for another split of the questions")
    subjects = cli_main("mcq", "subjects", *common, "--other-per-subject", "2", "--batch-size", "4")
    assert subjects.returncode == 0, subjects.stderr
    table = json.loads((tmp_path / "subjects.json").read_text())
    assert set(table) == set(SUBJECTS) and all(row["letters"]["n"] == 2 for row in table.values())
    assert all(s in subjects.stdout for s in SUBJECTS)
    pytest.importorskip("lm_eval")
    checked = cli_main("mcq", "lm-eval", "--setting", "economics", *common, *SMALL, "--timing-questions", "2")
    assert checked.returncode == 0, checked.stderr
    result = json.loads((tmp_path / "economics-lm-eval.json").read_text())
    # the guard flags the forget questions: eco in lm-eval corrupts them as eco-unlearn does
    assert result["agreement"] == {"hf_vs_original": 1.0, "eco_vs_guarded": 1.0}
    assert f"agreement {result['agreement']}" in checked.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--setting", "nosuch"], "unknown MMLU setting 'nosuch'"),
        (["run", "--forget-subjects", "nosuch"], "unknown MMLU subject(s) nosuch; known: astronomy"),
        (["run", "--forget-subjects", "astronomy", "--related-subjects", "astronomy"], "both forgotten and related"),
        (["run", "--setting", "economics", "--forget-subjects", "astronomy"], "give either --setting or --forget"),
        (["run", "--setting", "economics", "--methods", "guess"], "unknown scoring method(s) guess"),
        (["run", "--setting", "economics", "--focus-per-subject", "2", "--other-per-subject", "3"], "lower 'other'"),
        (["subjects", "--data-dir", "/nonexistent/data"], "no mmlu data in /nonexistent/data (--data-dir)"),
        (["run", "--setting", "economics", "--data-dir", "/nonexistent/data"], "no mmlu data in /nonexistent/data"),
        (["lm-eval", "--setting", "economics"], "run `eco-unlearn mcq run` for this setting first"),
    ],
)
def test_bad_input_gets_one_clear_error_line(cli_main, tiny_dir, data_dir, tmp_path, args, message):
    given = set(args)
    fill = (("--model", tiny_dir), ("--data-dir", data_dir), ("--out", tmp_path / "out"))
    defaults = [arg for flag, value in fill if flag not in given for arg in (flag, str(value))]
    assert_one_error_line(cli_main("mcq", *args, *defaults), message)
    assert not any(tmp_path.rglob("*.jsonl"))  # bad input is refused before anything is scored
