"""Local lm-evaluation-harness tasks for multiple-choice questions: one JSON Lines file and one YAML
task per subject, loaded with lm-eval's ``json`` dataset builder (no hub access) through
``--include_path``.

Each document carries its whole prompt, so the context lm-eval builds is exactly eco-unlearn's
``letters_prompt``, and its ``acc`` (the likeliest of the continuations " A", " B", ..., or "A", "B", ...
for a tokenizer without one-token space-led letters: ``letter_prefix``) is the letters prediction: the
two tools score the same tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ...data.mmlu import McqQuestion
from ...io import atomic_write_text
from .prompts import LETTERS, letters_prompt

__all__ = ["TASK_PREFIX", "task_name", "write_lm_eval_tasks"]

TASK_PREFIX = "eco_mcq_"

_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{letters}}}}"
doc_to_target: answer
target_delimiter: {delimiter}
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def task_name(subject: str) -> str:
    return TASK_PREFIX + (subject or "questions")


def write_lm_eval_tasks(questions: Sequence[McqQuestion], folder: str | os.PathLike, prefix: str = " ") -> list[str]:
    """Write one task per subject of ``questions`` into ``folder``, each letter continuing the prompt after
    ``prefix`` (the model's ``letter_prefix``); returns the task names, sorted."""
    folder = Path(folder).resolve()
    by_subject: dict[str, list[McqQuestion]] = {}
    for q in questions:
        by_subject.setdefault(q.subject, []).append(q)
    names = []
    for subject, items in sorted(by_subject.items()):
        name = task_name(subject)
        data = folder / f"{name}.jsonl"
        rows = [{"prompt": letters_prompt(q), "letters": list(LETTERS[: len(q.choices)]), "answer": q.answer,
                 "subject": q.subject} for q in items]
        atomic_write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        task = _YAML.format(task=name, data=json.dumps(str(data)), delimiter=json.dumps(prefix))
        atomic_write_text(folder / f"{name}.yaml", task)
        names.append(name)
    return names
