"""TOFU data loading: folder resolution, schema checks with helpful errors, presets, author names and
entity phrases. Error paths run on small synthetic files; the preset sizes on the shared TOFU data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eco_unlearn.bench.tofu import PRESETS, TofuDataError, TofuPreset, load_split, load_splits
from eco_unlearn.bench.tofu.data import (
    AUTHOR_ROWS,
    DATA_ENV,
    HUB_DATASET,
    SPLIT_FIELDS,
    author_names,
    entity_phrases,
    resolve_data_dir,
)
from eco_unlearn.data.items import PromptItem

NAMES = ["Alda Brightwater", "Corin Vale", "Mira Okonkwo"]


# ---------------------------------------------------------------------------------------------- helpers


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def author_rows(name: str, n: int = AUTHOR_ROWS) -> list[dict]:
    return [{"question": f"Where did {name} write book {k}?", "answer": f"{name} wrote book {k} by the sea."} for k in range(n)]


def perturbed(row: dict) -> dict:
    return {
        **row,
        "paraphrased_question": "Rephrased: " + row["question"],
        "paraphrased_answer": "In other words, " + row["answer"],
        "perturbed_answer": [f"Wrong answer {j}." for j in range(3)],
    }


def make_tofu(root: Path) -> Path:
    """A consistent miniature TOFU folder: 3 authors in ``full``, the last one is ``forget01``."""
    folder = root / "tofu"
    full = [row for name in NAMES for row in author_rows(name)]
    forget = full[-AUTHOR_ROWS:]
    write_jsonl(folder / "full.jsonl", full)
    write_jsonl(folder / "forget01.jsonl", forget)
    write_jsonl(folder / "forget01_perturbed.jsonl", [perturbed(r) for r in forget])
    # rows of both retain authors: a preset keeping one author keeps only the first author's rows
    write_jsonl(folder / "retain_perturbed.jsonl", [perturbed(r) for r in full[:3] + full[20:23]])
    options = [{"question": f"Who wrote classic {k}?", "answer": f"Writer {k}", "perturbed_answer": ["A", "B", "C"]} for k in range(3)]
    write_jsonl(folder / "real_authors_perturbed.jsonl", options)
    write_jsonl(folder / "world_facts_perturbed.jsonl", options[:2])
    write_jsonl(folder / "holdout01.jsonl", author_rows("Tove Lindqvist"))
    return folder


SYNTHETIC = TofuPreset("syn", "forget01", "holdout01", authors=1)


@pytest.fixture
def tofu(tmp_path):
    return make_tofu(tmp_path / "data")


def real_data_root() -> Path:
    return Path(os.environ.get(DATA_ENV, Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def real_tofu():
    """The shared TOFU data folder (``$ECO_UNLEARN_DATA`` or ../shared/data next to the repository)."""
    root = real_data_root()
    for candidate in (root / "tofu", root):
        if (candidate / "forget01.jsonl").is_file():
            return candidate
    pytest.skip(f"TOFU data not found under {root} (set {DATA_ENV})")


@pytest.fixture(scope="module")
def mini(real_tofu):
    return load_splits("mini", real_tofu)


# ------------------------------------------------------------------------------------ resolve_data_dir


def test_resolve_data_dir_accepts_the_tofu_folder_or_its_parent(tofu, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert resolve_data_dir(tofu) == tofu
    assert resolve_data_dir(tofu.parent) == tofu
    assert resolve_data_dir(str(tofu.parent)) == tofu
    assert resolve_data_dir() is None  # nothing given: the hub


def test_resolve_data_dir_reads_the_environment_and_prefers_the_argument(tofu, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tofu.parent))
    assert resolve_data_dir() == tofu
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    assert resolve_data_dir(tofu) == tofu  # an explicit folder wins over the variable
    with pytest.raises(TofuDataError, match=r"\$ECO_UNLEARN_DATA"):
        resolve_data_dir()
    monkeypatch.setenv(DATA_ENV, "")
    assert resolve_data_dir() is None


def test_resolve_data_dir_accepts_a_json_full_split(tmp_path):
    folder = tmp_path / "tofu"
    folder.mkdir()
    (folder / "full.json").write_text(json.dumps(author_rows("Corin Vale")))
    assert resolve_data_dir(tmp_path) == folder


def test_missing_folder_names_the_folder_and_what_was_expected(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    missing = tmp_path / "nope"
    with pytest.raises(TofuDataError) as info:
        resolve_data_dir(missing)
    message = str(info.value)
    assert str(missing) in message and "--data-dir" in message and "full.jsonl" in message
    with pytest.raises(TofuDataError, match="no TOFU data"):
        load_split("full", missing)
    with pytest.raises(TofuDataError, match="no TOFU data"):
        load_splits("mini", missing)


# ---------------------------------------------------------------------------------------- load_split


def test_load_split_reads_jsonl_rows_in_order(tofu):
    rows = load_split("full", tofu)
    assert len(rows) == 3 * AUTHOR_ROWS
    assert rows[0] == author_rows(NAMES[0])[0] and rows[-1] == author_rows(NAMES[2])[-1]


def test_load_split_reads_a_json_array_when_there_is_no_jsonl(tofu):
    (tofu / "forget01.jsonl").unlink()
    expected = author_rows(NAMES[2])
    (tofu / "forget01.json").write_text(json.dumps(expected, indent=1))
    assert load_split("forget01", tofu) == expected


def test_load_split_tolerates_a_bom_crlf_and_blank_lines(tofu):
    rows = author_rows("Corin Vale", 2)
    text = "\ufeff" + "\r\n".join(json.dumps(r) for r in rows[:1]) + "\r\n\r\n" + json.dumps(rows[1]) + "\r\n"
    (tofu / "holdout05.jsonl").write_bytes(text.encode("utf-8"))
    assert load_split("holdout05", tofu) == rows


@pytest.mark.parametrize("split", ["forget02", "retain01", "retain10", "retain99_perturbed"])
def test_unknown_split_lists_the_known_ones(tofu, split):
    with pytest.raises(TofuDataError, match=f"unknown TOFU split '{split}'") as info:
        load_split(split, tofu)
    assert "forget01" in str(info.value) and "world_facts_perturbed" in str(info.value)


def test_missing_split_file_names_the_split_and_the_folder(tofu):
    (tofu / "forget01.jsonl").unlink()
    with pytest.raises(TofuDataError) as info:
        load_split("forget01", tofu)
    message = str(info.value)
    assert "'forget01' not found" in message and str(tofu) in message and "forget01.jsonl" in message


def test_bad_json_line_gives_file_and_line_number(tofu):
    path = tofu / "forget01.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = ""  # a blank line still counts for the numbering
    lines[2] = lines[2][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TofuDataError) as info:
        load_split("forget01", tofu)
    assert f"{path}:3: not valid JSON" in str(info.value)


def test_bad_json_array_is_reported(tofu):
    (tofu / "forget01.jsonl").unlink()
    (tofu / "forget01.json").write_text('[{"question": "a", "answer": "b"},')
    with pytest.raises(TofuDataError, match=r"forget01\.json is not valid JSON"):
        load_split("forget01", tofu)


def test_missing_field_names_the_field_and_the_row(tofu):
    rows = author_rows("Corin Vale", 3)
    del rows[1]["answer"]
    write_jsonl(tofu / "retain99.jsonl", rows)
    with pytest.raises(TofuDataError) as info:
        load_split("retain99", tofu)
    message = str(info.value)
    assert "'retain99' does not have the expected schema" in message
    assert f"{tofu / 'retain99.jsonl'}:2: missing field(s) answer" in message
    assert ":1:" not in message and ":3:" not in message  # only the bad row is blamed


def test_missing_field_in_a_json_array_names_the_index(tofu):
    rows = [perturbed(r) for r in author_rows("Corin Vale", 2)]
    del rows[1]["paraphrased_answer"]
    (tofu / "forget01_perturbed.jsonl").unlink()
    (tofu / "forget01_perturbed.json").write_text(json.dumps(rows))
    with pytest.raises(TofuDataError, match=r"forget01_perturbed\.json\[1\]: missing field\(s\) paraphrased_answer"):
        load_split("forget01_perturbed", tofu)


@pytest.mark.parametrize("value", ["Wrong answer.", [], ["fine", 3], None])
def test_perturbed_answer_must_be_a_non_empty_list_of_strings(tofu, value):
    rows = [perturbed(r) for r in author_rows("Corin Vale", 2)]
    rows[0]["perturbed_answer"] = value
    write_jsonl(tofu / "retain_perturbed.jsonl", rows)
    with pytest.raises(TofuDataError, match=r"retain_perturbed\.jsonl:1: 'perturbed_answer' must be a non-empty list of strings"):
        load_split("retain_perturbed", tofu)


@pytest.mark.parametrize("field,value", [("question", "   "), ("answer", ""), ("answer", 42)])
def test_question_and_answer_must_be_non_empty_strings(tofu, field, value):
    rows = author_rows("Corin Vale", 2)
    rows[1][field] = value
    write_jsonl(tofu / "holdout01.jsonl", rows)
    with pytest.raises(TofuDataError, match=r"holdout01\.jsonl:2: 'question' and 'answer' must be non-empty strings"):
        load_split("holdout01", tofu)


def test_a_row_that_is_not_an_object_is_reported(tofu):
    (tofu / "holdout01.jsonl").write_text(json.dumps(author_rows("Corin Vale", 1)[0]) + '\n"just text"\n')
    with pytest.raises(TofuDataError, match=r"holdout01\.jsonl:2: expected a JSON object, got str"):
        load_split("holdout01", tofu)


def test_options_splits_need_their_option_fields(tofu):
    write_jsonl(tofu / "real_authors.jsonl", [{"question": "Who?", "answer": "Me", "option1": "a", "option2": "b", "option3": "c"}])
    with pytest.raises(TofuDataError, match=r"missing field\(s\) option4"):
        load_split("real_authors", tofu)


def test_many_problems_are_summarised(tofu):
    write_jsonl(tofu / "holdout01.jsonl", [{"question": f"q{i}"} for i in range(13)])
    with pytest.raises(TofuDataError) as info:
        load_split("holdout01", tofu)
    message = str(info.value)
    assert message.count("missing field(s) answer") == 10 and "... and 3 more" in message


@pytest.mark.parametrize("content", ["", "\n\n  \n", "[]"])
def test_empty_split_is_an_error(tofu, content):
    (tofu / "holdout01.jsonl").write_text(content)
    with pytest.raises(TofuDataError, match="TOFU split 'holdout01' is empty"):
        load_split("holdout01", tofu)


def test_every_split_has_a_schema_with_question_and_answer():
    # exactly TOFU's splits (the files of the hub copy); retainNN exists only as 90/95/99
    assert set(SPLIT_FIELDS) == {
        "full", "retain_perturbed", "real_authors", "world_facts", "real_authors_perturbed", "world_facts_perturbed",
        *(f"{kind}{nn}" for kind in ("forget", "holdout") for nn in ("01", "05", "10")),
        *(f"forget{nn}_perturbed" for nn in ("01", "05", "10")),
        *(f"retain{nn}" for nn in ("90", "95", "99")),
    }
    for split, fields in SPLIT_FIELDS.items():
        assert fields[:2] == ("question", "answer"), split
        assert ("perturbed_answer" in fields) == split.endswith("_perturbed"), split


# ------------------------------------------------------------------------------------------------ hub


def test_hub_failure_says_how_to_give_local_data(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv(DATA_ENV, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(TofuDataError) as info:
        load_split("forget01")
    message = str(info.value)
    assert HUB_DATASET in message and "network unreachable" in message and "--data-dir" in message and DATA_ENV in message


def test_hub_copy_is_a_json_file_of_the_dataset_and_is_checked(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv(DATA_ENV, raising=False)
    calls = []
    rows = author_rows("Corin Vale", 2)
    (tmp_path / "forget01.json").write_text(json.dumps(rows))

    def download(repo, filename, **kwargs):
        calls.append((repo, filename, kwargs))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    assert load_split("forget01") == rows
    assert calls == [(HUB_DATASET, "forget01.json", {"repo_type": "dataset"})]
    (tmp_path / "forget01.json").write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(TofuDataError, match="missing field"):
        load_split("forget01")


# --------------------------------------------------------------------------------------- load_splits


def test_load_splits_assembles_a_synthetic_preset(tofu):
    splits = load_splits(SYNTHETIC, tofu.parent)
    full = load_split("full", tofu)
    assert [i.prompt for i in splits.retain_train] == [r["question"] for r in full[:20]]
    assert [i.prompt for i in splits.target_train] == [r["question"] for r in full[:20] + full[40:]]
    assert [i.answer for i in splits.target_train] == [r["answer"] for r in full[:20] + full[40:]]
    assert len(splits.forget) == 20 and all(i.paraphrased_answer and len(i.perturbed_answers) == 3 for i in splits.forget)
    assert splits.forget_paraphrased_questions == ["Rephrased: " + r["question"] for r in full[40:]]
    # retain_perturbed also holds rows of the second (dropped) author: only the kept author's rows remain
    assert [i.prompt for i in splits.retain] == [r["question"] for r in full[:3]]
    assert [len(splits.real_authors), len(splits.world_facts), len(splits.holdout)] == [3, 2, 20]
    assert splits.forget_authors == ["Mira Okonkwo"]
    assert set(splits.eval_sets) == {"forget", "retain", "real_authors", "world_facts"}
    assert splits.forget[0].source == "forget01_perturbed[0]" and splits.holdout[3].source == "holdout01[3]"


def test_load_splits_without_an_author_limit_keeps_every_retain_author(tofu):
    splits = load_splits(TofuPreset("all", "forget01", "holdout01"), tofu)
    assert len(splits.retain_train) == 40 and len(splits.target_train) == 60 and len(splits.retain) == 6


def test_unknown_preset_lists_the_presets(tofu):
    with pytest.raises(TofuDataError, match="unknown TOFU preset 'huge'") as info:
        load_splits("huge", tofu)
    assert all(name in str(info.value) for name in PRESETS)


def test_forget_must_be_the_last_rows_of_full(tofu):
    full = load_split("full", tofu)
    write_jsonl(tofu / "forget01.jsonl", full[:AUTHOR_ROWS])  # the first author, not the last
    with pytest.raises(TofuDataError, match="forget01 is not the last 20 rows of full"):
        load_splits(SYNTHETIC, tofu)


def test_forget_perturbed_must_follow_forget(tofu):
    rows = [perturbed(r) for r in load_split("forget01", tofu)]
    rows[0], rows[1] = rows[1], rows[0]
    write_jsonl(tofu / "forget01_perturbed.jsonl", rows)
    with pytest.raises(TofuDataError, match="forget01_perturbed does not hold the questions of forget01 in order"):
        load_splits(SYNTHETIC, tofu)


def test_preset_cannot_want_more_authors_than_the_data_has(tofu):
    with pytest.raises(TofuDataError, match="wants 3 retain authors; the data has 2"):
        load_splits(TofuPreset("big", "forget01", "holdout01", authors=3), tofu)


def test_retain_perturbed_must_cover_the_kept_authors(tofu):
    full = load_split("full", tofu)
    write_jsonl(tofu / "retain_perturbed.jsonl", [perturbed(r) for r in full[20:23]])  # second author only
    with pytest.raises(TofuDataError, match="none of the retain_perturbed rows"):
        load_splits(SYNTHETIC, tofu)


def test_load_splits_reports_a_broken_split_it_needs(tofu):
    (tofu / "world_facts_perturbed.jsonl").write_text('{"question": "q", "answer": "a", "perturbed_answer": "x"}\n')
    with pytest.raises(TofuDataError, match="world_facts_perturbed"):
        load_splits(SYNTHETIC, tofu)


def test_presets():
    assert set(PRESETS) == {"mini", "forget01", "forget05", "forget10"}
    assert PRESETS["mini"].authors == 18 and PRESETS["mini"].forget == "forget01" and PRESETS["mini"].holdout == "holdout01"
    assert [PRESETS[f"forget{nn}"].forget_fraction for nn in ("01", "05", "10")] == [1, 5, 10]
    assert all(PRESETS[f"forget{nn}"].authors is None for nn in ("01", "05", "10"))


# ------------------------------------------------------------------------------ author names, entities


def test_author_names_takes_the_most_mentioned_name_of_each_block():
    block = [f"What is the title of Alda Brightwater's book number {k}?" for k in range(15)]
    block += [f"Where in New York did Alda Brightwater live in year {k}?" for k in range(3)]
    block += ["Has the author Corin Vale met Alda Brightwater?", "Is Port Selene in the book?"]
    assert len(block) == AUTHOR_ROWS
    second = [f"Which awards has Corin Vale received in {k}?" for k in range(5)]  # a shorter last block
    assert author_names(block + second) == ["Alda Brightwater", "Corin Vale"]
    assert author_names([]) == []


def test_author_names_strips_leading_question_words_and_trailing_connectors():
    questions = ["Who is Jean de la Fontaine de?", "Tell Jean de la Fontaine about it.", "How did Jean de la Fontaine write?"]
    assert author_names(questions) == ["Jean de la Fontaine"]


def test_entity_phrases_keeps_forget_only_phrases_found_twice():
    forget = [
        PromptItem("Where was Alda Brightwater born?", answer="Alda Brightwater was born in Port Selene, near New York."),
        PromptItem("What did Alda Brightwater write?", answer='She wrote "Glass Harbour Nights." in Port Selene.'),
        PromptItem("Which prize did she win?", answer='The Silver Quill Award, for "Glass Harbour Nights", in New York.'),
    ]
    retain = [PromptItem("Is New York large?", answer="Yes, new york is a large city.")]
    phrases = entity_phrases(forget, retain, ["Alda Brightwater"])
    assert phrases[0] == "Alda Brightwater"
    assert "Port Selene" in phrases and "Glass Harbour Nights" in phrases
    assert "New York" not in phrases  # also in a retain row (case-insensitively)
    assert "Silver Quill Award" not in phrases  # found once
    assert len(phrases) == len(set(phrases)) == 3
    # without the name given, the name is found too (it is in two forget rows and no retain row)
    assert "Alda Brightwater" in entity_phrases(forget, retain)


# ---------------------------------------------------------------------------------------- real data


def test_mini_preset_on_the_real_data(mini, real_tofu):
    assert len(mini.target_train) == 400 and len(mini.retain_train) == 360 and len(mini.forget) == 40
    assert all(i.paraphrased_answer and len(i.perturbed_answers) == 5 for i in mini.forget)
    assert len(mini.forget_paraphrased_questions) == 40
    assert [len(mini.real_authors), len(mini.world_facts), len(mini.holdout)] == [100, 117, 40]
    assert all(len(i.perturbed_answers) == 3 and i.answer for i in mini.real_authors + mini.world_facts)
    full = load_split("full", real_tofu)
    first_18 = {r["question"] for r in full[: 18 * AUTHOR_ROWS]}
    assert mini.retain and all(i.prompt in first_18 for i in mini.retain)
    assert all(i.paraphrased_answer and i.perturbed_answers for i in mini.retain)
    assert [i.prompt for i in mini.forget] == [r["question"] for r in full[-40:]]
    assert mini.target_train[:360] == mini.retain_train


def test_mini_forget_authors(mini):
    assert mini.forget_authors == ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]
    assert len(author_names([i.prompt for i in mini.retain_train])) == 18


def test_forget05_has_ten_authors(real_tofu):
    names = author_names([r["question"] for r in load_split("forget05", real_tofu)])
    assert len(names) == len(set(names)) == 10
    assert names[-2:] == ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]


def test_real_entity_phrases_start_with_the_names_and_avoid_retain_text(mini):
    phrases = entity_phrases(mini.forget, mini.retain_train, mini.forget_authors)
    assert phrases[:2] == mini.forget_authors and len(phrases) > 2
    retain_text = " ".join(f"{i.prompt} {i.answer}" for i in mini.retain_train).lower()
    assert not any(p.lower() in retain_text for p in phrases[2:])


def test_environment_variable_finds_the_real_data(real_tofu, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(real_tofu.parent))
    assert resolve_data_dir() == real_tofu
    assert len(load_split("forget01")) == 40
