"""Multiple-choice questions in MMLU's layout (``question``, ``choices``, ``answer`` index, ``subject``):
MMLU itself (local ``mmlu/{test,dev}.jsonl`` or the hub's ``cais/mmlu``) and any file in the same layout
(WMDP's files use it too, without ``subject``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import DatasetError
from ..extras import require
from .local import read_json_rows, resolve_dataset_dir

__all__ = ["HUB_DATASET", "McqQuestion", "load_mcq_file", "load_mmlu", "mmlu_subjects"]

HUB_DATASET = "cais/mmlu"
SPLITS = ("test", "dev", "validation")


@dataclass(frozen=True)
class McqQuestion:
    """One multiple-choice question: ``answer`` is the index of the right choice."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""
    source: str = ""

    @property
    def subject_name(self) -> str:
        """The subject as MMLU's prompt header writes it (``high_school_physics`` -> ``high school physics``)."""
        return self.subject.replace("_", " ")


def _question(row: object, where: str, default_subject: str) -> McqQuestion:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: 'question' must be a non-empty string")
    if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
        raise DatasetError(f"{where}: 'choices' must be a list of at least 2 strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise DatasetError(f"{where}: 'answer' must be the index of a choice (0 to {len(choices) - 1}), got {answer!r}")
    subject = row.get("subject", default_subject)
    if not isinstance(subject, str):
        raise DatasetError(f"{where}: 'subject' must be a string")
    return McqQuestion(question, tuple(choices), answer, subject, where)


def load_mcq_file(path: str | os.PathLike, subject: str = "") -> list[McqQuestion]:
    """Questions of one JSON Lines (or JSON array) file in MMLU's layout; ``subject`` fills rows without one."""
    rows = read_json_rows(path)
    if not rows:
        raise DatasetError(f"{path} holds no questions")
    return [_question(row, where, subject) for row, where in rows]


def _select(questions: Iterable[McqQuestion], subjects: Sequence[str] | None) -> list[McqQuestion]:
    questions = list(questions)
    if subjects is None:
        return questions
    known = {q.subject for q in questions}
    unknown = [s for s in subjects if s not in known]
    if unknown:
        raise DatasetError(f"unknown MMLU subject(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    wanted = set(subjects)
    return [q for q in questions if q.subject in wanted]


def load_mmlu(
    split: str = "test", subjects: Sequence[str] | None = None, data_dir: str | os.PathLike | None = None
) -> list[McqQuestion]:
    """MMLU questions of ``split`` (``test`` or ``dev``), optionally of some ``subjects`` only, from
    ``data_dir`` (or ``$ECO_UNLEARN_DATA``; the folder or one holding ``mmlu/``), else from the hub."""
    if split not in SPLITS:
        raise DatasetError(f"unknown MMLU split {split!r}; known: {', '.join(SPLITS)}")
    folder = resolve_dataset_dir("mmlu", "test.jsonl", data_dir)
    if folder is not None:
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            raise DatasetError(f"MMLU split {split!r} not found in {folder} (expected {path.name})")
        return _select(load_mcq_file(path), subjects)
    return _select(_from_hub(split), subjects)


def _from_hub(split: str) -> list[McqQuestion]:
    datasets = require("datasets", "hub", "loading MMLU from the hub")
    try:
        rows = datasets.load_dataset(HUB_DATASET, "all", split=split)
    except Exception as exc:  # offline, missing package, hub errors: all mean the same to the user
        raise DatasetError(
            f"cannot load MMLU split {split!r} from the hub ({HUB_DATASET}): {exc}. Offline, give a local copy "
            "with --data-dir or $ECO_UNLEARN_DATA"
        ) from None
    return [_question(dict(row), f"{HUB_DATASET}:{split}[{i}]", "") for i, row in enumerate(rows)]


def mmlu_subjects(questions: Iterable[McqQuestion]) -> list[str]:
    """The subjects present, sorted."""
    return sorted({q.subject for q in questions})
