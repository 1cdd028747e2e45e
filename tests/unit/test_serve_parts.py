"""The server's parts on their own: the row collector (stops, lengths, streaming deltas), the audit log's
atomic appends, the micro-batcher, guard snapshots and reload, and fail-closed classification."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from pathlib import Path

import pytest
import torch

import eco_unlearn.serve
import eco_unlearn.serve.reload as reload_module
from eco_unlearn import CorruptionSpec, Guard, GuardError, KeywordClassifier, Target, fingerprint
from eco_unlearn.serve import LocalBackend, ServeConfig
from eco_unlearn.serve.audit import AuditLog
from eco_unlearn.serve.batcher import Job, MicroBatcher
from eco_unlearn.serve.failclosed import FAIL_CLOSED_TARGET, classify
from eco_unlearn.serve.generation import GenerationParams, RowCollector
from eco_unlearn.serve.reload import GuardHolder
from unit_helpers import StatelessClassifier, make_guard


def feed(collector, tokens_per_row):
    """Run the collector like generate does: one column of new tokens per step; returns the done flags."""
    done = None
    width = max(len(t) for t in tokens_per_row)
    ids = torch.zeros((len(tokens_per_row), 1), dtype=torch.long)
    for step in range(width):
        column = torch.tensor([[t[step] if step < len(t) else 0] for t in tokens_per_row])
        ids = torch.cat([ids, column], dim=1)
        done = collector(ids, None)
    return done


def test_collector_lengths_eos_and_deltas(tok):
    words = tok(" dog cat dog cat", add_special_tokens=False)["input_ids"]
    out: list[list[str]] = [[], []]
    rows = [RowCollector.row(3, emit=out[0].append), RowCollector.row(10, emit=out[1].append)]
    collector = RowCollector(tok, [tok.eos_token_id], rows)
    done = feed(collector, [words, words[:2] + [tok.eos_token_id] + words[2:]])
    assert done.tolist() == [True, True]
    assert rows[0].finish == "length" and rows[0].ids == words[:3] and "".join(out[0]) == rows[0].text
    assert rows[1].finish == "stop" and rows[1].ids == words[:2]  # the tokens after end-of-sequence are ignored
    assert "".join(out[1]) == tok.decode(words[:2])


def test_collector_stop_strings_are_cut_and_never_streamed(tok):
    words = tok(" the lazy dog sleeps in the sun", add_special_tokens=False)["input_ids"]
    sent: list[str] = []
    row = RowCollector.row(50, stops=("dog sl", "xyz"), emit=sent.append)
    collector = RowCollector(tok, [tok.eos_token_id], [row])
    feed(collector, [words])
    assert row.finish == "stop" and row.text == " the lazy "
    assert "".join(sent) == " the lazy " and not any("dog" in s for s in sent)


def test_collector_cancelled_rows_stop(tok):
    flag = {"cancelled": False}
    row = RowCollector.row(50, cancelled=lambda: flag["cancelled"])
    collector = RowCollector(tok, [], [row])
    words = tok(" dog cat dog", add_special_tokens=False)["input_ids"]
    feed(collector, [words[:1]])
    flag["cancelled"] = True
    assert feed(collector, [words[1:]]).tolist() == [True] and row.finish == "cancelled"


def test_batch_keys():
    assert GenerationParams().batch_key() == GenerationParams(seed=3, stop=("x",)).batch_key()
    assert GenerationParams(0.7, top_p=0.5).batch_key() == GenerationParams(0.7, top_p=0.5, stop=("x",)).batch_key()
    assert GenerationParams(0.7).batch_key() != GenerationParams(0.8).batch_key()
    assert GenerationParams(0.7, seed=1).batch_key() is None


def test_audit_log_lines_never_interleave(tmp_path):
    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(path), AuditLog(path)]  # two writers on the same file, as two processes would be
    big = "x" * 20_000  # far beyond any pipe/stdio buffer: a single write must still keep the line whole

    def write(n):
        for i in range(200):
            logs[n % 2].write({"writer": n, "i": i, "pad": big if i % 7 == 0 else ""})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 6 * 200 == sum(log.lines_written for log in logs)
    records = [json.loads(line) for line in lines]  # every line is whole
    assert sorted((r["writer"], r["i"]) for r in records) == sorted((n, i) for n in range(6) for i in range(200))
    assert os.stat(path).st_mode & 0o777 == 0o640 & ~_umask()
    for log in logs:
        log.close()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_batcher_groups_compatible_jobs_in_order():
    runs: list[list[str]] = []

    async def main():
        batcher = MicroBatcher(lambda jobs: runs.append([j.payload for j in jobs]), max_rows=3, wait_s=0.01)
        batcher.start()
        for name, key, rows in [("a", "g", 1), ("b", None, 1), ("c", "g", 1), ("d", "s", 1), ("e", "g", 2), ("f", "g", 1)]:
            batcher.submit(Job(key, rows, name))
        await asyncio.sleep(0.2)
        await batcher.close()

    asyncio.run(main())
    assert runs == [["a", "c", "f"], ["b"], ["d"], ["e"]]


def test_batcher_skips_cancelled_jobs():
    runs = []

    async def main():
        batcher = MicroBatcher(lambda jobs: runs.append([j.payload for j in jobs]), wait_s=0.01)
        batcher.start()
        batcher.submit(Job("g", 1, "gone", lambda: True))
        batcher.submit(Job("g", 1, "kept"))
        await asyncio.sleep(0.1)
        await batcher.close()

    asyncio.run(main())
    assert runs == [["kept"]]


def test_batcher_keeps_every_prompt_within_its_context_room():
    """A job joins a batch only if the batch's largest new_tokens fits every member's room."""
    runs = []

    async def main():
        batcher = MicroBatcher(lambda jobs: runs.append([j.payload for j in jobs]), max_rows=8, wait_s=0.01)
        batcher.start()
        for name, tokens, room in [("long-prompt", 10, 30), ("long-answer", 100, 120), ("short", 5, 120), ("mid", 20, 25)]:
            batcher.submit(Job("g", 1, name, new_tokens=tokens, room=room))
        await asyncio.sleep(0.2)
        await batcher.close()

    asyncio.run(main())
    assert runs == [["long-prompt", "short", "mid"], ["long-answer"]]


def test_requests_that_fit_alone_are_never_refused_for_a_batch_mate(model, tok, guarded):
    """A long prompt with few new tokens and a short one with many fit the 128-token context apart, not
    together: they run apart, each exactly as alone (batched, both failed with a 500)."""
    long, short = "Tell me about Harry Potter " * 16, "Hello"
    assert len(tok(long)["input_ids"]) + 100 > model.config.max_position_embeddings
    backend = LocalBackend(model, tok, make_guard(model), ServeConfig(model_id="tiny", batch_wait_ms=50))

    async def main():
        await backend.start()
        snapshot = backend.guards.current
        handles = [await backend.submit(backend.prepare([text], n), GenerationParams(), snapshot)
                   for text, n in ((long, 10), (short, 100))]
        results = [(await handle.done)[0] for handle in handles]
        await backend.close()
        return results

    first, second = asyncio.run(main())
    assert first.text == guarded.generate(long, max_new_tokens=10)[0] and first.completion_tokens == 10
    assert first.decision.flagged and second.text == guarded.generate(short, max_new_tokens=100)[0]
    assert backend.batcher.batches == [1, 1]


def test_guard_holder_reload_checks_before_swapping(model, other_model, tmp_path):
    first, wrong = tmp_path / "first", tmp_path / "wrong"
    make_guard(model).save(first)
    make_guard(other_model).save(wrong)  # built for another model: its fingerprint differs
    holder = GuardHolder(model, Guard.load(first), str(first))
    before = holder.current
    for path in (wrong, tmp_path / "missing"):
        with pytest.raises(GuardError):
            holder.reload(str(path))
        assert holder.current is before
    after = holder.reload()
    assert after.generation == 1 and after.version == before.version and after.path == str(first)


def test_guard_holder_fingerprints_the_model_once_for_every_reload(model, tmp_path, monkeypatch):
    make_guard(model).save(tmp_path / "guard")
    calls = []
    monkeypatch.setattr(reload_module, "fingerprint", lambda m: calls.append(m) or fingerprint(m))
    holder = GuardHolder(model, Guard.load(tmp_path / "guard"), str(tmp_path / "guard"))
    for _ in range(3):
        holder.reload()
    assert calls == [model] and holder.current.generation == 3


def test_in_flight_snapshot_keeps_the_old_guard_after_reload(model, tok, tmp_path):
    """A request holds the snapshot it arrived with: generation after a reload still uses the old guard."""
    make_guard(model, keywords=("Paris",), name="paris").save(tmp_path / "paris")
    config = ServeConfig(model_id="tiny", guard_path=None)
    backend = LocalBackend(model, tok, make_guard(model), config)

    async def main():
        await backend.start()
        old = backend.guards.current
        backend.guards.reload(str(tmp_path / "paris"))
        prepared = backend.prepare(["Tell me about Harry Potter"], 3)
        old_result = await (await backend.submit(prepared, GenerationParams(), old)).done
        new_result = await (await backend.submit(prepared, GenerationParams(), backend.guards.current)).done
        await backend.close()
        return old_result[0], new_result[0]

    old_result, new_result = asyncio.run(main())
    assert old_result.decision.targets == ["hp"] and old_result.decision.corrupted_tokens == 4
    assert not new_result.decision.flagged


class _Flaky(StatelessClassifier):
    kind = "test-flaky"

    def predict_proba(self, texts):
        import numpy as np

        if any("boom" in t for t in texts):
            raise ValueError("boom")
        return np.array([np.nan if "NaN" in t else 0.9 if "wizard" in t else 0.1 for t in texts])


def test_classify_fails_closed_per_text():
    guard = Guard([
        Target("a", _Flaky(), CorruptionSpec("gaussian_first_n", 0.5)),
        Target("b", KeywordClassifier(["dragon"]), CorruptionSpec("gaussian_first_n", 2.0)),
        Target("c", KeywordClassifier(["troll"]), CorruptionSpec("zero_first_n", 3)),
    ])
    result = classify(guard, ["a wizard", "boom", "plain", "NaN"])
    assert result.errors[0] is None and result.errors[2] is None and result.errors[1] == "ValueError: boom"
    assert "non-finite score from target(s) a" in result.errors[3]  # NaN never reaches a threshold: it fails closed
    assert result.decisions[0].targets == ["a"] and not result.decisions[2].flagged
    for failed in (result.decisions[1], result.decisions[3]):
        assert failed.flagged and failed.targets == [FAIL_CLOSED_TARGET]
        assert sorted((c.name, c.strength) for c in failed.corruptions) == [("gaussian_first_n", 2.0), ("zero_first_n", 3)]
    assert classify(None, ["x"]).decisions[0].flagged is False


def test_batcher_fails_every_job_of_a_batch_whose_run_raises_and_goes_on():
    runs, failed = [], []

    def run(jobs):
        runs.append([j.payload for j in jobs])
        if len(runs) == 1:
            raise RuntimeError("boom")

    async def main():
        batcher = MicroBatcher(run, wait_s=0.01)
        batcher.start()
        for name in ("a", "b"):
            batcher.submit(Job("g", 1, name, fail=lambda exc, name=name: failed.append((name, str(exc)))))
        await asyncio.sleep(0.1)
        batcher.submit(Job("g", 1, "c", fail=lambda exc: failed.append(("c", str(exc)))))
        await asyncio.sleep(0.1)
        await batcher.close()

    asyncio.run(main())
    assert runs == [["a", "b"], ["c"]] and failed == [("a", "boom"), ("b", "boom")]


def test_guard_holder_reload_classifies_a_probe_before_swapping(model, tmp_path, monkeypatch):
    make_guard(model).save(tmp_path / "guard")
    holder = GuardHolder(model, make_guard(model), str(tmp_path / "guard"))
    before = holder.current
    monkeypatch.setattr(KeywordClassifier, "predict_proba", lambda self, texts: [float("inf")] * len(texts))
    with pytest.raises(GuardError, match="probe text .*non-finite score"):
        holder.reload()
    assert holder.current is before
    monkeypatch.undo()
    assert holder.reload().generation == 1


def test_the_server_uses_only_the_runtimes_public_api():
    """No guard swapped into a GuardedModel, no private planning helper called (what
    ``git grep -n "\\._rows\\|\\._strongest\\|\\.guard = " eco_unlearn/serve`` checks)."""
    pattern = re.compile(r"\._rows|\._strongest|\.guard = ")
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted(Path(eco_unlearn.serve.__file__).parent.glob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert found == []
