"""Score multiple-choice questions on a (guarded) model, two ways, with a resumable per-question cache.

* ``letters``: the next-token logits of the answer letters after the lettered prompt (MMLU's standard
  zero-shot scoring; what lm-evaluation-harness's ``mmlu`` tasks compute as ``acc``).
* ``cloze``: each choice's log-likelihood as the continuation of the question, divided by the choice's
  length in characters (lm-evaluation-harness's ``acc_norm``), so long choices are not penalised.

A guarded model answers an unflagged prompt on exactly the plain path of the bare model, so when
``reuse`` holds the bare model's scores, only flagged prompts are run again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ...data.mmlu import McqQuestion
from ...errors import DatasetError
from ...io import atomic_write_text
from ...runtime.guarded import GuardedModel
from ...runtime.plan import Plan
from .prompts import cloze_prompt, letter_token_ids, letters_prompt

__all__ = ["METHODS", "QuestionScore", "ScoreCache", "question_key", "score_questions"]

METHODS = ("letters", "cloze")
Progress = Callable[[str, int, int], None]


def question_key(question: McqQuestion) -> str:
    """A stable id of a question (its subject, text and choices): the cache key."""
    text = json.dumps([question.subject, question.question, list(question.choices)], ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class QuestionScore:
    """One question scored one way: a score per choice (higher is preferred) and whether the guard
    flagged the prompt."""

    key: str
    method: str
    scores: tuple[float, ...]
    flagged: bool

    @property
    def prediction(self) -> int:
        return int(np.argmax(self.scores))


class ScoreCache:
    """Per-question scores in a JSON Lines file, rewritten atomically after every batch, so that a stopped
    run resumes where it stopped. ``None`` for a path keeps them in memory only."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.scores: dict[tuple[str, str], QuestionScore] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                row = json.loads(line)
                self.scores[(row["key"], row["method"])] = QuestionScore(
                    row["key"], row["method"], tuple(row["scores"]), bool(row["flagged"])
                )

    def get(self, key: str, method: str) -> QuestionScore | None:
        return self.scores.get((key, method))

    def add(self, scores: Iterable[QuestionScore]) -> None:
        for score in scores:
            self.scores[(score.key, score.method)] = score
        if self.path is not None:
            lines = [json.dumps(asdict(s)) for s in self.scores.values()]
            atomic_write_text(self.path, "\n".join(lines) + "\n")


def _letters(model: GuardedModel, questions: Sequence[McqQuestion], batch_size: int) -> list[QuestionScore]:
    width = max(len(q.choices) for q in questions)
    letter_ids = letter_token_ids(model.tokenizer, width)
    plan = model.plan([letters_prompt(q) for q in questions])
    logits = model.next_token_logits(plan, batch_size=batch_size)
    return [
        QuestionScore(question_key(q), "letters", tuple(logits[i, letter_ids[: len(q.choices)]].tolist()), d.flagged)
        for i, (q, d) in enumerate(zip(questions, plan.decisions))
    ]


def _cloze(model: GuardedModel, questions: Sequence[McqQuestion], batch_size: int) -> list[QuestionScore]:
    plan = model.plan([cloze_prompt(q) for q in questions])
    # every choice of a question is scored against the same planned prompt: one decision, one corruption
    rows = [row for row, q in zip(plan.rows, questions) for _ in q.choices]
    continuations = [" " + c for q in questions for c in q.choices]
    logprobs = model.score(Plan(rows, plan.seed), continuations, batch_size=batch_size)
    out, start = [], 0
    for q, decision in zip(questions, plan.decisions):
        k = len(q.choices)
        scores = tuple(float(lp.sum()) / max(len(c), 1) for lp, c in zip(logprobs[start : start + k], q.choices))
        out.append(QuestionScore(question_key(q), "cloze", scores, decision.flagged))
        start += k
    return out


_SCORERS = {"letters": _letters, "cloze": _cloze}
_PROMPTS = {"letters": letters_prompt, "cloze": cloze_prompt}


def score_questions(
    model: GuardedModel,
    questions: Sequence[McqQuestion],
    *,
    methods: Sequence[str] = METHODS,
    cache: ScoreCache | None = None,
    reuse: ScoreCache | None = None,
    batch_size: int = 8,
    chunk: int = 32,
    progress: Progress | None = None,
) -> dict[str, dict[str, QuestionScore]]:
    """Each question's score by each of ``methods``: ``{method: {question_key: QuestionScore}}``.

    Questions already in ``cache`` are not scored again; new scores are added to it every ``chunk``
    questions. With ``reuse`` (the bare model's cache), a question whose prompt the guard leaves
    unflagged takes the bare model's score, which is what the guarded model computes for it.
    """
    unknown = [m for m in methods if m not in _SCORERS]
    if unknown:
        raise DatasetError(f"unknown scoring method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    cache = cache if cache is not None else ScoreCache()
    note = progress or (lambda what, done, total: None)
    for method in methods:
        todo = [q for q in questions if cache.get(question_key(q), method) is None]
        if reuse is not None and todo and model.guard is not None:
            decisions = model.guard.decide([_PROMPTS[method](q) for q in todo])
            reused = [reuse.get(question_key(q), method) for q, d in zip(todo, decisions) if not d.flagged]
            cache.add(s for s in reused if s is not None)
            todo = [q for q in todo if cache.get(question_key(q), method) is None]
        todo.sort(key=lambda q: len(_PROMPTS[method](q)) + sum(len(c) for c in q.choices))
        for start in range(0, len(todo), chunk):
            note(f"{method}: scoring", start, len(todo))
            cache.add(_SCORERS[method](model, todo[start : start + chunk], batch_size))
        note(f"{method}: scored", len(todo), len(todo))
    return {m: {question_key(q): cache.get(question_key(q), m) for q in questions} for m in methods}
