"""Tests of eco_unlearn.data.items: reading prompt items from files and lists, and their validation."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.errors import EcoUnlearnError
from eco_unlearn.data.items import ItemsError, PromptItem, find_overlap, general_prompts, normalize_prompt, read_items


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_items_error_is_an_eco_unlearn_error():
    assert issubclass(ItemsError, EcoUnlearnError)
    assert issubclass(ItemsError, ValueError)


# ------------------------------------------------------------------------------------ JSON Lines


@pytest.mark.parametrize("key", ["prompt", "question", "text", "query"])
def test_jsonl_prompt_keys(tmp_path, key):
    path = write_jsonl(tmp_path / "f.jsonl", [{key: "Who wrote Harry Potter?", "answer": "J.K. Rowling"}])
    [item] = read_items(path)
    assert item.prompt == "Who wrote Harry Potter?"
    assert item.answer == "J.K. Rowling"
    assert item.choices is None and item.answer_index is None
    assert item.source == f"{path}:1"


def test_jsonl_prompt_key_takes_precedence_over_question(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "Q?", "prompt": "P?"}])
    assert read_items(path)[0].prompt == "P?"


def test_jsonl_choices_with_answer_index_fill_in_the_answer(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo"], "answer_index": 1}])
    [item] = read_items(path)
    assert item.choices == ("Rome", "Paris", "Oslo")
    assert item.answer_index == 1
    assert item.answer == "Paris"


def test_jsonl_explicit_answer_is_kept_next_to_answer_index(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"prompt": "Capital?", "choices": ["Rome", "Paris"], "answer_index": 1, "answer": "It is Paris"}])
    [item] = read_items(path)
    assert (item.answer, item.answer_index) == ("It is Paris", 1)


def test_jsonl_mmlu_integer_answer_is_the_choice_index(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "2 + 2?", "choices": ["3", "4", "5", "22"], "answer": 1}])
    [item] = read_items(path)
    assert item.answer_index == 1
    assert item.answer == "4"


def test_jsonl_label_is_an_alias_of_answer_index(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"question": "Q?", "choices": ["a", "b"], "label": 0}])
    [item] = read_items(path)
    assert (item.answer_index, item.answer) == (0, "a")


def test_jsonl_tofu_fields(tmp_path):
    row = {
        "question": "Where was the author born?",
        "answer": "In Taipei.",
        "paraphrased_answer": "The author was born in Taipei.",
        "perturbed_answer": ["In Paris.", "In Lima.", "In Cairo."],
    }
    [item] = read_items(write_jsonl(tmp_path / "tofu.jsonl", [row]))
    assert item.paraphrased_answer == "The author was born in Taipei."
    assert item.perturbed_answers == ("In Paris.", "In Lima.", "In Cairo.")
    assert item.answer == "In Taipei."


def test_jsonl_single_perturbed_answer_string_and_plural_key(tmp_path):
    rows = [
        {"prompt": "A?", "perturbed_answer": "wrong"},
        {"prompt": "B?", "perturbed_answers": ["w1", "w2"]},
    ]
    first, second = read_items(write_jsonl(tmp_path / "f.jsonl", rows))
    assert first.perturbed_answers == ("wrong",)
    assert second.perturbed_answers == ("w1", "w2")


def test_to_dict_round_trips(tmp_path):
    row = {"question": "Q?", "choices": ["x", "y", "z"], "answer_index": 2, "paraphrased_answer": "p", "perturbed_answer": ["q", "r"]}
    [item] = read_items(write_jsonl(tmp_path / "f.jsonl", [row]))
    data = item.to_dict()
    assert "source" not in data
    json.dumps(data)
    assert PromptItem.from_dict(data) == item


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"prompt": "one"}\n\n   \n{"prompt": "two"}\n', encoding="utf-8")
    items = read_items(path)
    assert [i.prompt for i in items] == ["one", "two"]
    assert items[1].source.endswith(":4")


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"prompt": "one"}\r\n\r\n{"prompt": "two"}\r\n')
    assert [i.prompt for i in read_items(path)] == ["one", "two"]


def test_jsonl_string_with_unicode_line_separator_is_one_line(tmp_path):
    """JSON allows a raw U+2028/U+2029/U+0085 inside a string (json.dumps(ensure_ascii=False) writes
    them so); JSON Lines separates records by '\\n' only, so such a record must still parse."""
    path = tmp_path / "f.jsonl"
    rows = [{"prompt": "first part\u2028second part", "answer": "x"}, {"prompt": "next\u0085line"}, {"prompt": "last"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    items = read_items(path)
    assert [i.prompt for i in items] == [r["prompt"] for r in rows]
    assert items[2].source.endswith(":3")


# -------------------------------------------------------------------------------- malformed lines


def test_all_malformed_lines_are_reported_with_their_line_numbers(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"prompt": "fine"}\n'
        '{"prompt": "broken"\n'
        '{"prompt": "fine too"}\n'
        '{"answer": "no prompt field"}\n'
        '{"prompt": "fine again"}\n',
        encoding="utf-8",
    )
    with pytest.raises(ItemsError) as info:
        read_items(path)
    message = str(info.value)
    assert "2 malformed" in message
    assert f"{path}:2" in message and f"{path}:4" in message
    assert f"{path}:1" not in message and f"{path}:3" not in message and f"{path}:5" not in message


def test_many_malformed_lines_are_summarised(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text("not json\n" * 25, encoding="utf-8")
    with pytest.raises(ItemsError) as info:
        read_items(path)
    message = str(info.value)
    assert "25 malformed" in message
    assert "and 5 more" in message
    assert f"{path}:20:" in message and f"{path}:21:" not in message


@pytest.mark.parametrize(
    "row,fragment",
    [
        ({"prompt": "Q?", "choices": ["a", "b"], "answer_index": 2}, "answer_index"),
        ({"prompt": "Q?", "choices": ["a", "b"], "answer_index": -1}, "answer_index"),
        ({"prompt": "Q?", "choices": ["a", "b"], "answer": 7}, "answer_index"),
        ({"prompt": "Q?", "choices": ["a", "b"]}, "answer_index"),
        ({"prompt": "Q?", "choices": "a, b", "answer_index": 0}, "choices"),
        ({"prompt": "Q?", "choices": ["only one"], "answer_index": 0}, "choices"),
        ({"prompt": "Q?", "choices": ["a", ""], "answer_index": 0}, "choices"),
        ({"prompt": "Q?", "choices": ["a", 3], "answer_index": 0}, "choices"),
        ({"prompt": "Q?", "answer_index": 0}, "choices"),
        ({"prompt": "Q?", "choices": ["a", "b"], "answer_index": "1"}, "integer"),
        ({"prompt": "Q?", "choices": ["a", "b"], "answer_index": True}, "integer"),
        ({"prompt": "Q?", "choices": ["a", "b"], "answer_index": 1.0}, "integer"),
        ({"prompt": ""}, "empty"),
        ({"prompt": "   "}, "empty"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "Q?", "answer": ["x"]}, "answer"),
        ({"prompt": "Q?", "paraphrased_answer": 3}, "paraphrased_answer"),
        ({"prompt": "Q?", "perturbed_answer": [1, 2]}, "perturbed_answer"),
        ({"prompt": "Q?", "perturbed_answer": {"a": 1}}, "perturbed_answer"),
        ({"answer": "no prompt"}, "no prompt"),
        ([1, 2], "JSON object"),
        ("just a string", "JSON object"),
    ],
)
def test_malformed_items_are_items_errors(tmp_path, row, fragment):
    path = write_jsonl(tmp_path / "f.jsonl", [{"prompt": "good"}, json.dumps(row)])
    with pytest.raises(ItemsError) as info:
        read_items(path)
    assert fragment in str(info.value)
    assert f"{path}:2" in str(info.value)


def test_invalid_json_line_names_the_column(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", ['{"prompt": "x",}'])
    with pytest.raises(ItemsError, match=r"not valid JSON .*column"):
        read_items(path)


# ------------------------------------------------------------------------------ other file types


def test_txt_one_prompt_per_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("  Who is Harry Potter?  \n\n\t\nWhat is Hogwarts?\n{\"prompt\": \"kept verbatim\"}\n", encoding="utf-8")
    items = read_items(path)
    assert [i.prompt for i in items] == ["Who is Harry Potter?", "What is Hogwarts?", '{"prompt": "kept verbatim"}']
    assert [i.source for i in items] == [f"{path}:1", f"{path}:4", f"{path}:5"]
    assert all(i.answer is None for i in items)


def test_utf8_bom_is_not_part_of_the_first_item(tmp_path):
    """Files saved by some editors start with a UTF-8 byte-order mark; it is encoding, not content."""
    txt, jsonl = tmp_path / "p.txt", tmp_path / "p.jsonl"
    txt.write_bytes("\ufeffWho is Harry Potter?\nWhat is Hogwarts?\n".encode("utf-8"))
    jsonl.write_bytes('\ufeff{"prompt": "Who is Harry Potter?"}\n'.encode("utf-8"))
    assert read_items(txt)[0].prompt == "Who is Harry Potter?"
    assert read_items(jsonl)[0].prompt == "Who is Harry Potter?"


def test_json_array_file(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"question": "Q1?", "answer": "A1"}, "Plain prompt", {"prompt": "Q3?", "choices": ["x", "y"], "answer": 0}], indent=2), encoding="utf-8")
    items = read_items(path)
    assert [i.prompt for i in items] == ["Q1?", "Plain prompt", "Q3?"]
    assert items[0].answer == "A1"
    assert (items[2].answer_index, items[2].answer) == (0, "x")


def test_json_file_with_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "items.json", [{"prompt": "a"}, {"prompt": "b"}])
    assert [i.prompt for i in read_items(path)] == ["a", "b"]


def test_broken_json_array_file(tmp_path):
    path = tmp_path / "items.json"
    path.write_text('[{"prompt": "a"}, ', encoding="utf-8")
    with pytest.raises(ItemsError, match="not valid JSON"):
        read_items(path)


def test_empty_json_array_file(tmp_path):
    path = tmp_path / "items.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(ItemsError, match="empty"):
        read_items(path)


def test_bad_element_of_json_array_is_an_items_error(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"prompt": "a"}, {"answer": "b"}]), encoding="utf-8")
    with pytest.raises(ItemsError, match="no prompt"):
        read_items(path)


# ------------------------------------------------------------------------------- bad file paths


def test_missing_file(tmp_path):
    with pytest.raises(ItemsError, match="does not exist"):
        read_items(tmp_path / "nope.jsonl", name="forget set")


def test_directory(tmp_path):
    with pytest.raises(ItemsError, match="not a file"):
        read_items(tmp_path)
    with pytest.raises(ItemsError):
        read_items(str(tmp_path))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_empty_file(tmp_path, content, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ItemsError, match="no prompts"):
        read_items(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".txt", ".json"])
def test_non_utf8_file(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes("Qui a écrit Harry Potter ?\n".encode("latin-1"))
    with pytest.raises(ItemsError, match="not UTF-8"):
        read_items(path)


# --------------------------------------------------------------------------------- in-memory lists


def test_list_of_strings_and_dicts_and_items():
    existing = PromptItem("Already an item", answer="yes")
    items = read_items(["Who is Harry?", {"question": "Q?", "answer": "A"}, existing], name="forget set")
    assert [i.prompt for i in items] == ["Who is Harry?", "Q?", "Already an item"]
    assert items[0].source == "forget set[0]"
    assert items[1].answer == "A"
    assert items[2] is existing


def test_generator_source():
    assert [i.prompt for i in read_items(p for p in ["a", "b"])] == ["a", "b"]


def test_empty_list_is_an_error():
    with pytest.raises(ItemsError, match="empty"):
        read_items([], name="retain set")


def test_bad_list_entry_names_its_index():
    with pytest.raises(ItemsError, match=r"forget set\[1\]"):
        read_items(["fine", "   "], name="forget set")
    with pytest.raises(ItemsError, match=r"items\[0\]"):
        read_items([{"choices": ["a", "b"]}])


def test_prompt_item_direct_validation():
    with pytest.raises(ItemsError):
        PromptItem("Q?", choices=("a", "b"), answer_index=None)
    with pytest.raises(ItemsError):
        PromptItem("Q?", answer_index=0)
    assert PromptItem("Q?", choices=("a", "b"), answer_index=1).answer is None


def test_source_does_not_affect_equality():
    assert PromptItem("Q?", source="a.jsonl:1") == PromptItem("Q?", source="b.txt:9")


# ------------------------------------------------------------------------------------- overlap


def test_normalize_prompt():
    assert normalize_prompt("  Who IS\tHarry \n Potter? ") == "who is harry potter?"
    assert normalize_prompt("STRASSE") == normalize_prompt("straße")  # casefold, not lower


def test_find_overlap_is_case_and_whitespace_insensitive():
    forget = read_items(["Who is Harry Potter?", "What is Hogwarts?", "Name a wizard."])
    retain = read_items(["who  is harry   POTTER?", "What is Hogwarts", "Tell me a joke", "NAME A WIZARD."])
    pairs = find_overlap(forget, retain)
    assert [(a.prompt, b.prompt) for a, b in pairs] == [
        ("Who is Harry Potter?", "who  is harry   POTTER?"),
        ("Name a wizard.", "NAME A WIZARD."),
    ]


def test_find_overlap_none():
    assert find_overlap(read_items(["a b c"]), read_items(["a b", "b c", "abc"])) == []


def test_find_overlap_reports_every_duplicate_in_the_second_list():
    first = read_items(["Same prompt", "same   PROMPT"])
    second = read_items(["SAME prompt", "other", "same prompt"])
    pairs = find_overlap(first, second)
    assert len(pairs) == 2
    assert all(a.prompt == "Same prompt" for a, _ in pairs)  # the first match in `first`


# ------------------------------------------------------------------------------- built-in pool


def test_general_prompts_pool():
    items = general_prompts()
    assert len(items) >= 400
    keys = [normalize_prompt(i.prompt) for i in items]
    assert len(set(keys)) == len(keys)
    assert all(isinstance(i, PromptItem) and i.prompt.strip() for i in items)
    assert all(i.source for i in items)
    # everyday prompts, not Harry Potter trivia: none mentions the unit tests' forget scope
    assert not any("hogwarts" in k or "harry potter" in k for k in keys)
