"""RWKU loading from a local copy: folders, probe fields, target lists, and bad files as DatasetError."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.data.rwku import load_rwku, parse_target_spec, rwku_dir
from eco_unlearn.errors import DatasetError, InputError

PROBE = {"subject": "Ada Lovelace", "level": "1", "type": "cloze", "query": "Ada Lovelace wrote notes on the ___ Engine.", "answer": "Analytical"}


def write_target(root, number, name, **overrides):
    folder = root / f"{number}_{name.replace(' ', '_')}"
    folder.mkdir(parents=True)
    files = {
        "intro.json": [{"intro": f"{name} was a person.", "target": name}],
        "passage.json": [{"text": f"{name} lived."}],
        "forget_level1.json": [dict(PROBE, subject=name)],
        "forget_level2.json": [dict(PROBE, subject=name, level="2", type="simple question", query="Q?", answer="A")],
        "forget_level3.json": [dict(PROBE, subject=name, level="3", type="role play", query="Q3?", answer=1815)],
        "neighbor_level1.json": [dict(PROBE, subject=name, neighbor="Charles Babbage")],
        "neighbor_level2.json": [dict(PROBE, subject=name, level="2", neighbor="Charles Babbage")],
    }
    files.update(overrides)
    for file, rows in files.items():
        (folder / file).write_text(rows if isinstance(rows, str) else json.dumps(rows))
    return folder


def test_loads_targets_in_id_order_with_every_probe(tmp_path):
    write_target(tmp_path / "rwku", 2, "Grace Hopper")
    write_target(tmp_path / "rwku", 1, "Ada Lovelace")
    targets = load_rwku(None, tmp_path)
    assert [(t.id, t.name) for t in targets] == [(1, "Ada Lovelace"), (2, "Grace Hopper")]
    ada = targets[0]
    assert ada.intro == "Ada Lovelace was a person." and ada.passages == ("Ada Lovelace lived.",)
    assert [(p.kind, p.level) for p in ada.probes] == [("forget", 1), ("forget", 2), ("forget", 3), ("neighbor", 1), ("neighbor", 2)]
    assert ada.select("forget", [3])[0].answer == "1815"  # numeric answers become text
    assert ada.select("neighbor")[0].neighbor == "Charles Babbage"
    assert rwku_dir(tmp_path / "rwku") == tmp_path / "rwku"  # the folder itself works too


def test_target_lists():
    assert parse_target_spec("3,1-2,2") == (1, 2, 3)
    assert parse_target_spec([5, 4]) == (4, 5)
    for bad in ("1-", "x", "3-1", "0"):
        with pytest.raises(DatasetError):
            parse_target_spec(bad)


def test_missing_targets_and_folders_are_input_errors(tmp_path):
    write_target(tmp_path, 1, "Ada Lovelace")
    with pytest.raises(DatasetError, match="target.s. 7 not in"):
        load_rwku("7", tmp_path)
    with pytest.raises(InputError, match="no rwku data"):
        load_rwku("1", tmp_path / "elsewhere")


@pytest.mark.parametrize("overrides, message", [
    ({"forget_level2.json": "[{"}, "not valid JSON"),
    ({"forget_level1.json": [{"subject": "A", "level": "x", "query": "q", "answer": "a"}]}, "'level' must be"),
    ({"forget_level1.json": [{"subject": "A", "level": "1", "query": "q", "answer": ""}]}, "'answer' must be"),
    ({"forget_level1.json": [["not", "an", "object"]]}, "expected a JSON object"),
])
def test_bad_files_name_the_problem(tmp_path, overrides, message):
    write_target(tmp_path, 1, "Ada Lovelace", **overrides)
    with pytest.raises(DatasetError, match=message):
        load_rwku("1", tmp_path)


def test_a_missing_probe_file_is_named(tmp_path):
    folder = write_target(tmp_path, 1, "Ada Lovelace")
    (folder / "neighbor_level2.json").unlink()
    with pytest.raises(DatasetError, match="no neighbor_level2.json"):
        load_rwku("1", tmp_path)
