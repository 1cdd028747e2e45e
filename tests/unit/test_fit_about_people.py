"""fit --about for several people in one guard: the specs, the people file, RWKU targets as specs, the fit on
the tiny model (with a tiny random encoder), and the CLI's bad input."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys

import pytest

from eco_unlearn.data.items import ItemsError, normalize_prompt
from eco_unlearn.data.rwku import RwkuProbe, RwkuTarget
from eco_unlearn.fitting import ClassifierConfig, FitConfig, SearchConfig
from eco_unlearn.fitting.about import (
    AboutSpec, about_negatives, as_people, fit_about, nameless_items, people_items, people_names, read_people,
    rwku_people,
)

ADA = AboutSpec("Ada Lovelace", ("Countess of Lovelace",),
                "Ada Lovelace was born in London in 1815. She worked with Charles Babbage on the Analytical Engine.")
ALAN = AboutSpec("Alan Turing", (), "Alan Turing was born in Maida Vale in 1912. He worked at Bletchley Park during the war.")


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    """A tiny random BERT with the embedded MiniLM's tokenizer, saved as an encoder folder: the
    classifier's code path without the real encoder's weights."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from eco_unlearn.classifier.backbone import resolve_encoder

    path = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_several_people_give_every_name_and_items_about_each():
    assert people_names([ADA, ALAN]) == ("Ada Lovelace", "Countess of Lovelace", "Alan Turing")
    items = people_items([ADA, ALAN], seed=0)
    prompts = " ".join(i.prompt for i in items)
    assert "Ada Lovelace" in prompts and "Alan Turing" in prompts and "Countess of Lovelace" in prompts
    cloze = [i for i in items if i.source == "passage"]
    assert {i.answer for i in cloze} >= {"Analytical Engine", "Bletchley Park"}
    assert all(i.prompt.startswith("Complete the blank: ") and i.prompt.endswith("\nAnswer:") for i in cloze)
    negatives = [n.prompt.lower() for n in about_negatives([ADA, ALAN], mmlu=["Did Alan Turing break Enigma?", "What is 2 + 2?"])]
    assert "what is 2 + 2?" in negatives and not any("turing" in n or "ada lovelace" in n for n in negatives)


def test_people_are_refused_when_none_or_a_name_twice():
    with pytest.raises(ItemsError, match="at least one person"):
        as_people([])
    with pytest.raises(ItemsError, match="'Ada Lovelace' is given for 'Ada Lovelace' and again"):
        as_people([ADA, AboutSpec("Ada Lovelace")])
    with pytest.raises(ItemsError, match="'Alan Turing' is given for 'Ada Lovelace' and again for 'Alan Turing'"):
        as_people([AboutSpec("Ada Lovelace", ("Alan Turing",)), ALAN])
    assert as_people(ADA) == (ADA,)


def test_people_file_with_inline_and_file_passages(tmp_path):
    (tmp_path / "alan.txt").write_text(ALAN.passage, encoding="utf-8")
    path = tmp_path / "people.jsonl"
    path.write_text(json.dumps({"name": "Ada Lovelace", "aliases": ["Countess of Lovelace"], "passage": ADA.passage}) + "\n\n"
                    + json.dumps({"name": "Alan Turing", "passage_file": "alan.txt"}) + "\n", encoding="utf-8")
    assert read_people(path) == [ADA, ALAN]


@pytest.mark.parametrize(("text", "message"), [
    ("", "names nobody"),
    ("{not json", ":1: not valid JSON"),
    ('["Ada"]', ":1: expected an object with a 'name'"),
    ('{"name": ""}', ":1: 'name' must be a non-empty string"),
    ('{"name": "Ada", "alias": "A"}', "unknown field(s) alias"),
    ('{"name": "Ada", "aliases": [1]}', "'aliases' must be a string or a list of strings"),
    ('{"name": "Ada", "passage": "x", "passage_file": "y"}', "not both"),
    ('{"name": "Ada", "passage_file": "missing.txt"}', "cannot read passage_file missing.txt"),
    ('{"name": "Ada", "passage": 3}', "'passage' must be a string"),
    ('{"name": "Ada"}\n{"name": "ada"}', "given for 'Ada' and again for 'ada'"),
])
def test_bad_people_files_get_one_clear_error(tmp_path, text, message):
    path = tmp_path / "people.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ItemsError) as info:
        read_people(path)
    assert message in str(info.value)
    with pytest.raises(ItemsError, match="cannot read the people file"):
        read_people(tmp_path / "nope.jsonl")


def test_rwku_targets_become_specs_from_name_intro_and_passages_never_probes():
    probe = RwkuProbe(7, "Ada Lovelace", "forget", 1, "cloze", "SECRET-PROBE ___ question", "SECRET-ANSWER")
    target = RwkuTarget(7, "Ada Lovelace", "Please forget Ada Lovelace. Ada Lovelace was a mathematician.",
                        (ADA.passage,), (probe,))
    (spec,) = rwku_people([target])
    assert spec.name == "Ada Lovelace" and spec.passage.startswith("Ada Lovelace was a mathematician.")
    assert ADA.passage in spec.passage and "Please forget" not in spec.passage
    texts = [i.prompt + (i.answer or "") for i in people_items([spec])]
    assert not any("SECRET" in t for t in texts)


def test_one_guard_for_two_people_on_the_tiny_model(model, tok, tiny_encoder):
    people = [AboutSpec("Harry Potter", (), "Harry Potter went to Hogwarts in Scotland. Harry Potter lives with his aunt in Surrey."),
              AboutSpec("Hermione Granger", (), "Hermione Granger is a friend of Ron Weasley. Hermione Granger was born in 1979.")]
    config = FitConfig(chat=False, classifier=ClassifierConfig(backbone=tiny_encoder),
                       search=SearchConfig(objective="answer_recall", strength=1.0, objective_options={"known_only": False}))
    result = fit_about(model, tok, people, config)
    guard = result.guard
    assert [t.name for t in guard.targets] == ["people"]  # one target for everyone, named for them
    assert guard.targets[0].tokens.strategy == "entities"
    assert set(guard.targets[0].tokens.entities) == {"Harry Potter", "Hermione Granger"}
    decisions = guard.decide(["Where does Hermione Granger live?", "Tell me about harry potter.", "What is the capital of France?"])
    assert [d.flagged for d in decisions] == [True, True, False]
    assert result.report.objective.items == 4 and result.report.target == "people"
    assert "met_target" in guard.metadata
    named = fit_about(model, tok, people[:1], config.updated(search__objective_options={"known_only": False}))
    assert named.guard.targets[0].name == "Harry Potter"


def test_the_hardened_fit_trains_on_nameless_passage_questions_as_the_benchmark_does(model, tok):
    people = [AboutSpec("Harry Potter", (), "Harry Potter went to Hogwarts in Scotland. He lives with his aunt and uncle in Surrey."),
              AboutSpec("Hermione Granger", (), "Hermione Granger is a close friend of Ron Weasley. She was born in 1979 in England.")]
    nameless = nameless_items(people)
    assert len(nameless) == 4 and all(i.source == "nameless" and i.answer is None for i in nameless)
    assert any("Hogwarts" in i.prompt for i in nameless)
    assert not any(n in i.prompt for i in nameless for n in ("Harry", "Potter", "Hermione", "Granger"))
    config = FitConfig(chat=False, search=SearchConfig(objective="answer_recall", strength=1.0,
                                                       objective_options={"known_only": False}))
    result = fit_about(model, tok, people, config)  # hardened by default: the people classifier, no encoder
    splits = result.report.splits
    distinct = {normalize_prompt(i.prompt) for i in people_items(people) + nameless}  # the fit drops duplicates
    assert splits.forget_train + splits.forget_test == len(distinct)
    assert result.report.objective.items == 4  # nameless questions have no answer: the objective is the cloze facts
    assert result.guard.targets[0].classifier.to_config()["inner"]["kind"] == "people"


def test_the_guard_classifier_knows_the_names_an_rwku_people_file_gives_after_its_intro():
    from eco_unlearn.fitting.about import about_classifier

    target = RwkuTarget(72, "R. Kelly", "Please forget R. Kelly. R. Kelly is an American singer.",
                        ("Robert Sylvester Kelly (born January 8, 1967) is an American singer.",), ())
    (spec,) = rwku_people([target])  # the intro line first, as `eco-unlearn rwku people` writes it
    names = about_classifier([spec]).to_config()["inner"]["config"]["names"]
    assert names == [["R. Kelly", "Robert Sylvester Kelly"]]


def _cli(*args: str) -> tuple[int, str]:
    from eco_unlearn.cli import main

    stderr, argv = io.StringIO(), sys.argv
    sys.argv = ["eco-unlearn", *args]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
    return code, re.sub(r"\x1b\[[0-9;]*m", "", stderr.getvalue())


@pytest.mark.parametrize(("args", "message"), [
    (["--about", "Ada Lovelace", "--people", "p.jsonl"], "give one of --forget FILE"),
    ([], "give one of --forget FILE"),
    (["--about", "Ada Lovelace", "--about", "Alan Turing", "--alias", "Ada"], "--alias and --passage go with one --about"),
    (["--people", "PEOPLE", "--passage", "p.txt"], "in a --people file, each line has its own"),
    (["--about", "Ada Lovelace", "--about", "ada lovelace"], "given for 'Ada Lovelace' and again"),
    (["--people", "/nonexistent/people.jsonl"], "cannot read the people file"),
    (["--about", "Ada Lovelace", "--batch-size", "0"], "Invalid value for '--batch-size'"),
])
def test_fit_about_cli_bad_input_fails_before_the_model_loads(tmp_path, args, message):
    people = tmp_path / "people.jsonl"
    people.write_text('{"name": "Ada Lovelace"}\n', encoding="utf-8")
    args = [str(people) if a == "PEOPLE" else a for a in args]
    code, stderr = _cli("fit", "--out", str(tmp_path / "guard"), "--model", "/nonexistent/model", *args)
    assert code == 2 and message in stderr and "Traceback" not in stderr, stderr


@pytest.mark.parametrize(("text", "found"), [
    ("Buffett is co-founder of ___.", ["Buffett"]),
    ("When did Buffett found it?", ["Buffett"]),
    ("Jenner's daughters", ["Jenner"]),
    ("Rhea Jo Perlman (born March 31, 1948) is an American ___", ["Rhea Jo Perlman"]),
    ("Robert Sylvester Kelly is a singer", ["Robert Sylvester Kelly"]),
    ("Kendall Jenner was born in Los Angeles.", []),
    ("Kendall and Kylie Jenner", []),
    ("Who is the brother of Jason Kelce?", []),
    ("Kelly Clarkson sang it", []),
    ("The army used shields.", []),
])
def test_lone_surnames_stand_for_the_person_but_other_family_members_do_not(text, found):
    from eco_unlearn.runtime.tokens import surname_spans

    names = ["Warren Buffett", "Kris Jenner", "Travis Kelce", "R. Kelly", "Rhea Perlman", "Brooke Shields"]
    assert [text[a:b] for a, b in surname_spans(text, names)] == found


@pytest.mark.filterwarnings("ignore:prompt .* picked no token")
def test_people_token_selection_corrupts_names_and_lone_surnames_only(model, tok):
    from unit_helpers import make_guard

    from eco_unlearn import GuardedModel
    from eco_unlearn.runtime.tokens import TokenSelection

    people = TokenSelection("people", entities=["Harry Potter"], fallback=None)
    guarded = GuardedModel(model, tok, make_guard(model, keywords=["Harry", "Potter"], tokens=people))
    named, lone, other, none = guarded.decide(
        ["Harry Potter went to school.", "Potter went to school.", "Lily Potter went to school.", "Where did Harry go?"])
    assert all(d.flagged for d in (named, lone, other, none))
    assert named.corrupted_tokens > 0 and lone.corrupted_tokens > 0
    assert other.corrupted_tokens == 0 and none.corrupted_tokens == 0  # no fallback: nothing named, nothing corrupted


def test_related_entities_are_what_the_passage_mentions_most_never_the_person():
    from eco_unlearn.fitting.about import related_entities

    passage = ("Warren Buffett runs Berkshire Hathaway in Omaha. Buffett's partner at Berkshire Hathaway was Charlie Munger. "
               "In Omaha he met Charlie Munger. Bill Gates visited once.")
    found = related_entities(AboutSpec("Warren Buffett", (), passage))
    assert found[:3] == ["Berkshire Hathaway", "Charlie Munger", "Omaha"] and "Bill Gates" not in found
    assert not any("Buffett" in e for e in found)
    negatives = [n.prompt for n in about_negatives(AboutSpec("Warren Buffett", (), passage), related=True)]
    assert "Tell me about Berkshire Hathaway." in negatives


def test_reverse_questions_ask_for_the_person_and_become_a_second_target(model, tok, tiny_encoder):
    from eco_unlearn.fitting.about import reverse_questions

    spec = AboutSpec("Harry Potter", (), "Harry Potter was a wizard who lived with his aunt in Surrey. Potter founded "
                     "a club at Hogwarts in his fifth year. He won the Triwizard Tournament in his fourth year. "
                     "Ron Weasley was his friend.")
    questions = [q.prompt for q in reverse_questions(spec)]
    assert questions == ["Who was a wizard who lived with his aunt in Surrey?",
                         "Who founded a club at Hogwarts in his fifth year?",
                         "Who won the Triwizard Tournament in his fourth year?"]
    config = FitConfig(chat=False, classifier=ClassifierConfig(backbone=tiny_encoder),
                       search=SearchConfig(objective="answer_recall", strength=1.0, objective_options={"known_only": False}))
    few = fit_about(model, tok, spec, config, reverse=True)  # 3 questions: too few for a second target
    assert len(few.guard.targets) == 1 and "fewer than 8" in few.guard.metadata["reverse_target"]["skipped"]
    long = AboutSpec(spec.name, (), " ".join(f"Harry Potter won prize number {i} at Hogwarts in year {1990 + i}." for i in range(12)))
    result = fit_about(model, tok, long, config, reverse=True)
    main, reverse = result.guard.targets
    assert reverse.name == "Harry Potter-reverse" and reverse.tokens.strategy == "all_but_last"
    assert reverse.corruption == main.corruption and result.guard.metadata["reverse_target"]["reverse_questions"] == 12
