"""The prompting baseline's system turn, the "I don't know" answers and the memory sampler."""

from __future__ import annotations

import pytest

from eco_unlearn.bench.tofu.baselines import instructed_tokenizer, load_idk_answers, peak_memory
from eco_unlearn.bench.tofu.data import TofuDataError
from eco_unlearn.runtime.prompts import render_prompt


def test_the_instruction_opens_every_conversation_without_a_system_turn(tok):
    instructed = instructed_tokenizer(tok, 'Say nothing about "Ron".')
    text = render_prompt("Who is Ron?", instructed, chat=True).text
    assert text.index('Say nothing about "Ron".') < text.index("Who is Ron?")
    assert 'Say nothing' not in render_prompt("Who is Ron?", tok, chat=True).text  # the original is untouched
    given = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Ron?"}]
    assert "Say nothing" not in render_prompt(given, instructed, chat=True).text


def test_idk_answers_are_seeded_draws_from_the_file(tmp_path):
    folder = tmp_path / "tofu"
    folder.mkdir()
    (folder / "full.jsonl").write_text("{}\n")
    (folder / "idontknow.jsonl").write_text("I don't know.\n\"No idea.\"\n\n")
    drawn = load_idk_answers(str(folder), 20, seed=3)
    assert len(drawn) == 20 and set(drawn) == {"I don't know.", "No idea."}
    assert drawn == load_idk_answers(str(folder), 20, seed=3)
    (folder / "idontknow.jsonl").unlink()
    with pytest.raises(TofuDataError, match="idontknow.jsonl"):
        load_idk_answers(str(folder), 1)


def test_peak_memory_sees_an_allocation():
    with peak_memory(interval=0.01) as memory:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
    assert memory["peak_rss_bytes"] > 64 * 2**20
