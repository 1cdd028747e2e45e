"""Tests of eco_unlearn.classifier.KeywordClassifier and the classifier registry."""

from __future__ import annotations

import numpy as np
import pytest

from eco_unlearn.classifier import CLASSIFIERS, KeywordClassifier, PromptClassifier
from eco_unlearn.errors import GuardError


def test_registered_under_its_kind():
    """KeywordClassifier is loadable from guard artifacts as kind 'keyword'."""
    assert CLASSIFIERS["keyword"] is KeywordClassifier
    assert isinstance(KeywordClassifier(["x"]), PromptClassifier)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Tell me about harry potter's wand", 1.0),
        ("HARRY POTTER", 1.0),
        ("Harry Potter.", 1.0),
        ("(Potter)", 1.0),
        ("the potters made vases", 0.0),
        ("Potterhead", 0.0),
        ("a teapotter", 0.0),
        ("Paris is in France", 0.0),
        ("", 0.0),
    ],
)
def test_keyword_case_insensitive_on_word_boundaries(text, expected):
    """Keywords match case-insensitively, only as whole words."""
    clf = KeywordClassifier(["Potter"])
    assert clf.predict_proba([text]).tolist() == [expected]


def test_multiword_keyword_and_batch_output():
    """Multi-word keywords match; the output is a float64 array aligned with the inputs."""
    clf = KeywordClassifier(["Harry Potter", "Hogwarts"])
    probs = clf.predict_proba(["harry potter rocks", "harry is nice", "to hogwarts!", "potter alone"])
    assert probs.dtype == np.float64
    assert probs.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert clf.predict_proba([]).shape == (0,)


def test_keyword_special_characters_are_literal():
    """Regex metacharacters in keywords are matched literally."""
    clf = KeywordClassifier(["C++", "a.b"])
    assert clf.predict_proba(["I code C++ daily", "axb", "a.b"]).tolist() == [1.0, 0.0, 1.0]


def test_regex_patterns():
    """Regular expressions match (case-insensitively), alone or with keywords."""
    clf = KeywordClassifier(patterns=[r"\bvoldemort\b", r"order of the \w+"])
    assert clf.predict_proba(["VOLDEMORT returns", "order of the Phoenix", "order of"]).tolist() == [1.0, 1.0, 0.0]
    both = KeywordClassifier(["Paris"], patterns=[r"\d{4}-\d{2}"])
    assert both.predict_proba(["paris", "in 2024-05", "london"]).tolist() == [1.0, 1.0, 0.0]


def test_invalid_regex_raises_guard_error():
    """A malformed pattern raises GuardError naming it."""
    with pytest.raises(GuardError, match=r"invalid regular expression '\(unclosed'"):
        KeywordClassifier(patterns=["(unclosed"])


@pytest.mark.parametrize("keywords,patterns", [((), ()), (["", "   "], ()), ([], [])])
def test_empty_classifier_rejected(keywords, patterns):
    """No keyword (after stripping) and no pattern raises GuardError."""
    with pytest.raises(GuardError, match="at least one keyword or pattern"):
        KeywordClassifier(keywords, patterns=patterns)


def test_keywords_are_stripped():
    """Surrounding whitespace in keywords is removed before matching."""
    clf = KeywordClassifier(["  Hogwarts  ", ""])
    assert clf.keywords == ["Hogwarts"]
    assert clf.predict_proba(["at hogwarts"]).tolist() == [1.0]


def test_config_round_trip():
    """to_config/from_config rebuilds an equivalent classifier; it has no tensors."""
    clf = KeywordClassifier(["Harry Potter"], patterns=[r"hog\w+"])
    config = clf.to_config()
    assert config == {"keywords": ["Harry Potter"], "patterns": [r"hog\w+"]}
    assert clf.tensors() == {}
    again = KeywordClassifier.from_config(config, {})
    texts = ["harry potter", "hogsmeade", "harry", "pig"]
    assert again.predict_proba(texts).tolist() == clf.predict_proba(texts).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert again.to_config() == config


def test_single_keyword_string():
    """A single keyword passed as a plain str should flag texts containing it (or be refused)."""
    try:
        clf = KeywordClassifier("Hogwarts")
    except GuardError:
        return
    assert clf.predict_proba(["I went to Hogwarts", "a b c"]).tolist() == [1.0, 0.0]



def test_empty_regex_pattern_is_ignored_not_matching_everything():
    """An empty pattern would flag every text; it is dropped (and alone it is an error)."""
    assert KeywordClassifier(["Potter"], patterns=[""]).predict_proba(["hello"]).tolist() == [0.0]
    with pytest.raises(GuardError):
        KeywordClassifier(patterns=[""])


def test_registering_an_existing_kind_needs_replace():
    """The keyword kind cannot be replaced by accident."""
    from eco_unlearn.classifier import register_classifier

    with pytest.raises(GuardError, match="registered already"):
        register_classifier(type("Other", (), {"kind": "keyword"}))
    assert CLASSIFIERS["keyword"] is KeywordClassifier
