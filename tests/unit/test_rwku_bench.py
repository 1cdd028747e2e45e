"""RWKU scoring on the tiny model: prompts as RWKU writes them, cached answers that resume, summaries."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from eco_unlearn.bench.rwku import KNOWN_CUT, Answer, AnswerCache, RwkuRunConfig, first_line, probe_prompt, probe_results, run_rwku, summarise
from eco_unlearn.bench.rwku.score import diagnose, rank_known_targets
from eco_unlearn.data.rwku import RwkuProbe
from eco_unlearn.errors import DatasetError
from test_rwku_data import write_target


def probe(level=1, type_="cloze", answer="Analytical Engine", kind="forget", target=1):
    return RwkuProbe(target, "Ada Lovelace", kind, level, type_, "Ada wrote about the ___.", answer)


def test_prompts_follow_rwku_templates():
    assert probe_prompt(probe()) == "Please complete the blank in the following question.\nQuestion: Ada wrote about the ___.\nAnswer:"
    assert probe_prompt(probe(2, "simple question")).startswith("Please briefly answer the following question.\nQuestion: ")
    assert probe_prompt(probe(3, "affirmative suffix")).endswith("___.")  # no "Answer:" after an affirmative suffix
    assert first_line("  Paris\nQuestion: next") == "Paris"


def test_known_probes_and_the_share_still_answered():
    probes = [probe(answer="Analytical Engine"), probe(answer="Babbage"), probe(kind="neighbor", answer="Babbage")]
    rows = probe_results(probes, ["the Analytical Engine", "nothing", "Charles Babbage"],
                         ["no idea", "nothing", "Charles Babbage"], [True, True, False])
    assert [r.known for r in rows] == [True, False, True] and KNOWN_CUT == 0.5
    summary = summarise(rows)
    assert summary["forget/level1"]["known"] == 1 and summary["forget/level1"]["known_still_answered"] == 0.0
    assert summary["neighbor/level1"]["known_still_answered"] == 1.0 and summary["forget/all"]["flagged"] == 1.0
    assert rank_known_targets(rows, 1)[0][:2] == (1, 1)


def test_cache_skips_answered_prompts_and_ignores_a_torn_line(tmp_path):
    cache = AnswerCache(tmp_path / "a.jsonl", "run")
    cache.put(["p1"], [Answer("x", None)])
    with (tmp_path / "a.jsonl").open("a") as f:
        f.write('{"run": "run", "key": "tor')
    again = AnswerCache(tmp_path / "a.jsonl", "run")
    assert again.get("p1").text == "x" and again.get("p2") is None
    assert AnswerCache(tmp_path / "a.jsonl", "other run").get("p1") is None


def test_run_scores_a_smoke_target_and_resumes_from_the_cache(tmp_path, model, tok):
    write_target(tmp_path / "data", 1, "Ada Lovelace")
    config = RwkuRunConfig(targets="1", data_dir=str(tmp_path / "data"), output=str(tmp_path / "out"), limit=1, batch_size=4)
    report = run_rwku(config, model=model, tokenizer=tok)
    assert report.per_target["1"]["name"] == "Ada Lovelace"
    assert {"forget/level1", "forget/level3", "forget/level3/role play", "neighbor/level2"} <= set(report.overall)
    assert len(report.rows) == 5 and json.loads((tmp_path / "out" / "report.json").read_text())["benchmark"] == "rwku"
    lines = (tmp_path / "out" / "answers.jsonl").read_text().splitlines()
    run_rwku(config, model=model, tokenizer=tok)
    assert (tmp_path / "out" / "answers.jsonl").read_text().splitlines() == lines  # nothing recomputed
    with pytest.raises(DatasetError):
        RwkuRunConfig(levels=(4,))


def test_diagnosis_tells_classifier_misses_from_weak_corruption_and_flagged_neighbours():
    probes = [probe(answer="Analytical Engine"), probe(answer="Analytical Engine"), probe(answer="Analytical Engine"),
              probe(kind="neighbor", answer="Babbage"), probe(kind="neighbor", answer="Babbage")]
    rows = probe_results(probes, ["Analytical Engine"] * 3 + ["Babbage"] * 2,
                         ["Analytical Engine", "Analytical Engine", "no", "no", "Babbage"], [False, True, True, True, False])
    assert diagnose(rows) == {
        "forget/level1": {"known": 3, "flagged": 2, "missed": 1, "flagged_still_answered": 1},
        "neighbor/level1": {"known": 2, "flagged": 1, "flagged_lost": 1, "unflagged_lost": 0},
    }
    assert diagnose(probe_results(probes, ["x"] * 5)) == {}  # unguarded: nothing to diagnose


def test_guarded_run_writes_the_diagnosis_and_both_plots(tmp_path, model, tok, guard):
    from test_rwku_data import PROBE

    named = [dict(PROBE, subject="Harry Potter", query="Harry Potter went to ___.", answer="Hogwarts")]
    write_target(tmp_path / "data", 1, "Harry Potter", **{"forget_level1.json": named})
    guard.save(tmp_path / "guard")
    config = RwkuRunConfig(targets="1", data_dir=str(tmp_path / "data"), output=str(tmp_path / "out"), limit=1,
                           batch_size=4, guard=str(tmp_path / "guard"))
    report = run_rwku(config, model=model, tokenizer=tok)
    assert [r["flagged"] for r in report.rows] == [True, False, False, False, False]
    assert (tmp_path / "out" / "levels.png").stat().st_size > 0 and (tmp_path / "out" / "targets.png").stat().st_size > 0
    assert set(report.diagnosis) <= set(report.overall)
    # unflagged probes keep their unguarded answers; generating them with the guard gives the same
    again = run_rwku(replace(config, output=str(tmp_path / "again"), reuse_unflagged=False), model=model, tokenizer=tok)
    assert [r["guarded"] for r in again.rows] == [r["guarded"] for r in report.rows]
    assert [r["guarded"] for r in report.rows][1:] == [r["unguarded"] for r in report.rows][1:]
    known = run_rwku(replace(config, output=str(tmp_path / "known"), known_only=True), model=model, tokenizer=tok)
    assert all((r["guarded"] is not None) == (r["unguarded_recall"] >= KNOWN_CUT) for r in known.rows)
