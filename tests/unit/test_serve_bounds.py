"""The pure parts of the server's bounds and audit journal: counts, token counting that stops early, the
token limit, marker-based span location and its fallbacks, journal recovery and compaction."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from eco_unlearn.runtime import prompts
from eco_unlearn.runtime.prompts import render_prompt
from eco_unlearn.serve import ServeConfig
from eco_unlearn.serve.audit import JOURNAL_COMPACT_BYTES, AuditLog
from eco_unlearn.serve.bounds import check_counts, check_tokens, count_tokens, token_limit
from eco_unlearn.serve.errors import APIError


def test_check_counts_names_the_bound():
    config = ServeConfig(max_messages=3, max_prompts=2, max_prompt_chars=10)
    check_counts(["short", "also"], config, param="prompt")
    cases = [(["a", "b", "c"], "too_many_prompts"), (["x" * 11], "prompt_too_long"),
             ([[{"role": "user", "content": "hi"}] * 4], "too_many_messages")]
    for prompts_, code in cases:
        with pytest.raises(APIError) as info:
            check_counts(prompts_, config, param="prompt")
        assert info.value.status == 400 and info.value.code == code


def test_count_tokens_stops_soon_after_the_limit(tok, monkeypatch):
    texts = ["Harry Potter went to Hogwarts"] * 1000
    calls = []
    real = type(tok).__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, *a, **k: calls.append(len(a[0])) or real(self, *a, **k))
    assert count_tokens(texts, tok, 50) > 50
    assert sum(calls) <= 64  # one slice, not the 1000 texts
    calls.clear()
    assert count_tokens(["hi"], tok, 50) == 3 and not calls  # 2 bytes + 1 cannot exceed 50: not tokenized


def test_check_tokens_and_the_limit_from_the_context(tok):
    config = ServeConfig()
    assert token_limit(config, 128, "error", 28)[0] == 100
    assert token_limit(config, 128, "left", 28)[0] is None  # truncated later, not refused
    assert token_limit(ServeConfig(max_prompt_tokens=40), 128, "error", 28)[0] == 40
    assert token_limit(config, 128, "error", 500)[0] is None  # prepare refuses max_tokens itself
    with pytest.raises(APIError) as info:
        check_tokens([[{"role": "user", "content": "Harry Potter " * 60}]], tok, 100, param="messages", why="x")
    assert info.value.code == "context_length_exceeded"
    check_tokens(["Harry Potter"], tok, 100, param="prompt", why="x")


def test_marker_spans_are_exact_and_fall_back_when_the_template_alters_content(tok):
    messages = [{"role": "user", "content": "Who is Harry?"}, {"role": "assistant", "content": "A wizard."},
                {"role": "user", "content": "Where is Hogwarts?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    spans = prompts._marked_spans(text, messages, tok)
    assert [text[a:b] for a, b in spans] == [m["content"] for m in messages]
    upper = copy.deepcopy(tok)  # a template that changes the content: markers cannot be trusted
    upper.chat_template = tok.chat_template.replace("message['content']", "(message['content'] | upper)")
    assert prompts._marked_spans(upper.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                                 messages, upper) is None
    assert prompts._marked_spans(text, [{"role": "user", "content": "\ue000 sneaky"}], tok) is None
    twice = copy.deepcopy(tok)  # a template that repeats the content: the markers do not add up, the fallback works
    twice.chat_template = tok.chat_template.replace("message['content']", "(message['content'] ~ ' ' ~ message['content'])")
    rendered = render_prompt(messages, twice)
    assert [rendered.text[a:b] for a, b in rendered.user_spans] == ["Who is Harry?", "Where is Hogwarts?"]


def test_journal_recovers_dead_processes_and_compacts(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    dead = tmp_path / "audit.jsonl.pending-999999999-abcd"
    dead.write_text(json.dumps({"event": "accepted", "request_id": "a"}) + "\n"
                    + json.dumps({"event": "accepted", "request_id": "b"}) + "\n"
                    + json.dumps({"event": "done", "request_id": "a"}) + "\n{cut sh")
    log = AuditLog(path)
    assert log.recovered == 1 and not dead.exists()
    assert [json.loads(x)["request_id"] for x in path.read_text().splitlines()] == ["b"]
    monkeypatch.setattr("eco_unlearn.serve.audit.JOURNAL_COMPACT_BYTES", 200)
    for i in range(5):
        log.accept({"request_id": f"r{i}"})
        log.complete({"request_id": f"r{i}", "status": 200})
    assert os.path.getsize(log.journal) < 200 < JOURNAL_COMPACT_BYTES  # emptied when nothing was in flight
    log.close()
    assert not log.journal.exists() and len(path.read_text().splitlines()) == 6


def test_one_owner_flooding_the_queue_gets_only_its_share_of_a_batch():
    import asyncio

    from eco_unlearn.serve.batcher import Job, MicroBatcher

    runs = []

    async def main():
        batcher = MicroBatcher(lambda jobs: runs.append([j.payload for j in jobs]), max_rows=4, wait_s=0.01)
        batcher.start()
        for i in range(6):
            batcher.submit(Job("g", 1, f"flood{i}", owner="127.0.0.2"))
        batcher.submit(Job("g", 1, "ordinary0", owner="127.0.0.1"))
        batcher.submit(Job("g", 1, "ordinary1", owner="127.0.0.1"))
        await asyncio.sleep(0.2)
        await batcher.close()

    asyncio.run(main())
    assert runs[0] == ["flood0", "flood1", "ordinary0", "ordinary1"]  # not four floods first
    assert runs[1] == ["flood2", "flood3", "flood4", "flood5"]  # alone, the flood fills a batch


def test_a_row_cancelled_early_restarts_the_batch_without_it_and_sends_nothing_twice(tok):
    from eco_unlearn.serve.generation import RowCollector

    gone, sent = {"flag": False}, []
    dead = RowCollector.row(50, cancelled=lambda: gone["flag"])
    kept = RowCollector.row(50, emit=sent.append)
    collector = RowCollector(tok, [], [dead, kept], restart_within=2)
    words = tok(" dog cat dog cat", add_special_tokens=False)["input_ids"]
    assert collector(torch.tensor([[words[0], words[0]]]).T).tolist() == [False, False]
    gone["flag"] = True
    assert collector(torch.tensor([[words[1], words[1]]]).T).tolist() == [True, True] and collector.restart
    assert dead.finish == "cancelled" and kept.finish is None and kept.ids == [] and kept.peak == 2
    again = RowCollector(tok, [], [kept], restart_within=2)
    for word in words:
        again(torch.tensor([[word]]))
    assert "".join(sent) == tok.decode(words)  # what was streamed before the restart is not repeated
