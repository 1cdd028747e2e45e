"""MMLU-layout loading: local files, subject selection, schema errors that name the row."""

import json

import pytest

from eco_unlearn.data import DATA_ENV, load_mcq_file, load_mmlu, mmlu_subjects
from eco_unlearn.errors import DatasetError, InputError


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


ROWS = [
    {"question": "2 + 2 = ?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "elementary_mathematics"},
    {"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo", "Bern"], "answer": 1, "subject": "geography"},
]


def test_load_mmlu_reads_the_folder_or_its_mmlu_subfolder(tmp_path):
    (tmp_path / "mmlu").mkdir()
    _write(tmp_path / "mmlu" / "test.jsonl", ROWS)
    _write(tmp_path / "mmlu" / "dev.jsonl", ROWS[:1])
    for given in (tmp_path, tmp_path / "mmlu"):
        questions = load_mmlu("test", data_dir=given)
        assert [q.answer for q in questions] == [1, 1]
        assert questions[0].choices == ("3", "4", "5", "6")
        assert questions[0].subject_name == "elementary mathematics"
        assert questions[0].source.endswith("test.jsonl:1")
    assert len(load_mmlu("dev", data_dir=tmp_path)) == 1
    assert [q.subject for q in load_mmlu("test", ["geography"], data_dir=tmp_path)] == ["geography"]
    assert mmlu_subjects(load_mmlu("test", data_dir=tmp_path)) == ["elementary_mathematics", "geography"]


def test_load_mmlu_uses_the_environment_variable(tmp_path, monkeypatch):
    _write(tmp_path / "test.jsonl", ROWS)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert len(load_mmlu()) == 2


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "", "choices": ["a", "b"], "answer": 0}, "'question' must be a non-empty string"),
        ({"question": "q", "choices": ["a"], "answer": 0}, "at least 2 strings"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, "index of a choice"),
        ({"question": "q", "choices": ["a", "b"], "answer": True}, "index of a choice"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_malformed_rows_name_the_row_and_the_problem(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    _write(path, [ROWS[0], row])
    with pytest.raises(DatasetError, match=message) as info:
        load_mcq_file(path)
    assert "bad.jsonl:2" in str(info.value)
    assert isinstance(info.value, InputError)


def test_missing_data_unknown_subjects_and_splits_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no mmlu data in"):
        load_mmlu(data_dir=tmp_path)
    _write(tmp_path / "test.jsonl", ROWS)
    with pytest.raises(DatasetError, match="unknown MMLU subject.*nope.*known: elementary_mathematics"):
        load_mmlu(subjects=["nope"], data_dir=tmp_path)
    with pytest.raises(DatasetError, match="unknown MMLU split"):
        load_mmlu("train", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_mmlu("dev", data_dir=tmp_path)
    (tmp_path / "broken.jsonl").write_text('{"question": \n', encoding="utf-8")
    with pytest.raises(DatasetError, match="broken.jsonl:1: not valid JSON"):
        load_mcq_file(tmp_path / "broken.jsonl")


def test_wmdp_layout_without_subject_takes_the_given_one(tmp_path):
    _write(tmp_path / "wmdp.jsonl", [{k: v for k, v in ROWS[0].items() if k != "subject"}])
    assert load_mcq_file(tmp_path / "wmdp.jsonl", subject="wmdp_fixture")[0].subject == "wmdp_fixture"
