"""Greedy answers to RWKU probes, cached one line per probe so that an interrupted run resumes where it
stopped. RWKU generates 30 new tokens and stops at the first newline; so does this."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ...runtime.guarded import GuardedModel

__all__ = ["Answer", "AnswerCache", "answer_prompts", "first_line"]

Progress = Callable[[str, int, int], None]
MAX_NEW_TOKENS = 30


@dataclass(frozen=True)
class Answer:
    """The model's answer to one prompt, and whether the guard flagged the prompt (None when unguarded)."""

    text: str
    flagged: bool | None
    targets: tuple[str, ...] = ()


def first_line(text: str) -> str:
    """What RWKU keeps of a generation: up to the first newline, stripped."""
    return text.split("\n", 1)[0].strip()


class AnswerCache:
    """Answers already computed, in a JSON Lines file keyed by (run key, prompt). Appending one line per
    answer is enough for resumption: a torn last line (a killed run) is ignored on reading."""

    def __init__(self, path: str | os.PathLike | None, run_key: str) -> None:
        self.path = Path(path) if path is not None else None
        self.run_key = run_key
        self.answers: dict[str, Answer] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("run") == run_key:
                    self.answers[row["key"]] = Answer(row["text"], row["flagged"], tuple(row.get("targets", ())))

    @staticmethod
    def key(prompt: str) -> str:
        return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:24]

    def get(self, prompt: str) -> Answer | None:
        return self.answers.get(self.key(prompt))

    def put(self, prompts: Sequence[str], answers: Sequence[Answer]) -> None:
        rows = []
        for prompt, answer in zip(prompts, answers):
            key = self.key(prompt)
            self.answers[key] = answer
            rows.append(json.dumps({"run": self.run_key, "key": key, "text": answer.text, "flagged": answer.flagged,
                                    "targets": list(answer.targets)}))
        if self.path is not None and rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(rows) + "\n")
                handle.flush()
                os.fsync(handle.fileno())


def answer_prompts(
    model: GuardedModel,
    prompts: Sequence[str],
    cache: AnswerCache,
    *,
    batch_size: int = 16,
    chunk: int = 128,
    label: str = "answering",
    progress: Progress | None = None,
) -> list[Answer]:
    """Greedy answers (30 new tokens, cut at the first newline) to ``prompts``, in order, computing only
    those not in ``cache`` and saving every ``chunk`` of them as they finish."""
    todo = sorted({p for p in prompts if cache.get(p) is None}, key=len)
    for start in range(0, len(todo), chunk):
        if progress is not None:
            progress(label, len(prompts) - len(todo) + start, len(prompts))
        part = todo[start : start + chunk]
        texts, decisions = model.generate(
            part, max_new_tokens=MAX_NEW_TOKENS, batch_size=batch_size, return_decisions=True,
            stop_strings=["\n"], tokenizer=model.tokenizer,
        )
        guarded = model.guard is not None
        cache.put(part, [
            Answer(first_line(t), d.flagged if guarded else None, tuple(d.targets) if guarded else ())
            for t, d in zip(texts, decisions)
        ])
    if progress is not None:
        progress(label, len(prompts), len(prompts))
    return [cache.get(p) for p in prompts]  # type: ignore[misc]
