"""Prompt items: what a user gives to fit a guard, read from JSON Lines or plain-text files.

A file holds one item a line. Plain text: the line is the prompt. JSON Lines: an object with the prompt
under ``prompt`` (or ``question``, ``text``, ``query``) and optionally a reference ``answer``,
multiple-choice ``choices`` with the correct ``answer_index`` (an integer ``answer`` next to ``choices``
also counts, as in MMLU), and TOFU's ``paraphrased_answer`` and ``perturbed_answer`` for truth ratios.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ItemsError
from ..validation import is_integer

__all__ = ["ItemsError", "PromptItem", "find_overlap", "general_prompts", "normalize_prompt", "read_items"]

_PROMPT_KEYS = ("prompt", "question", "text", "query")



@dataclass(frozen=True)
class PromptItem:
    """One prompt with whatever references an objective may need."""

    prompt: str
    answer: str | None = None
    choices: tuple[str, ...] | None = None
    answer_index: int | None = None
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    source: str = field(default="", compare=False)  # "file:line", for messages

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ItemsError(f"{where}the prompt is empty")
        if self.choices is not None:
            if len(self.choices) < 2 or not all(isinstance(c, str) and c.strip() for c in self.choices):
                raise ItemsError(f"{where}'choices' must be a list of at least two non-empty strings")
            if not is_integer(self.answer_index) or not 0 <= self.answer_index < len(self.choices):
                raise ItemsError(f"{where}'answer_index' must index 'choices' (0 to {len(self.choices) - 1})")
        elif self.answer_index is not None:
            raise ItemsError(f"{where}'answer_index' needs 'choices'")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> "PromptItem":
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ItemsError(f"{where}expected a JSON object, got {type(data).__name__}")
        key = next((k for k in _PROMPT_KEYS if k in data), None)
        if key is None:
            raise ItemsError(f"{where}no prompt: give one of the fields {', '.join(_PROMPT_KEYS)}")
        choices = data.get("choices")
        prompt, answer = data[key], data.get("answer")
        index = data.get("answer_index", data.get("label") if choices is not None else None)
        if choices is not None and not isinstance(choices, list):
            raise ItemsError(f"{where}'choices' must be a list")
        if is_integer(answer) and choices is not None and index is None:
            index, answer = answer, None  # MMLU: the answer is the index of the right choice
        if choices is not None and answer is None and isinstance(index, int) and 0 <= index < len(choices):
            answer = choices[index]
        perturbed = data.get("perturbed_answers", data.get("perturbed_answer", ()))
        perturbed = [perturbed] if isinstance(perturbed, str) else perturbed
        for name, value in (("prompt", prompt), ("answer", answer), ("paraphrased_answer", data.get("paraphrased_answer"))):
            if value is not None and not isinstance(value, str):
                raise ItemsError(f"{where}'{name}' must be a string, not {type(value).__name__}")
        if index is not None and not is_integer(index):
            raise ItemsError(f"{where}'answer_index' must be an integer")
        if not isinstance(perturbed, (list, tuple)) or not all(isinstance(p, str) for p in perturbed):
            raise ItemsError(f"{where}'perturbed_answer' must be a list of strings")
        return cls(
            prompt=prompt,
            answer=answer,
            choices=tuple(choices) if choices is not None else None,
            answer_index=index,
            paraphrased_answer=data.get("paraphrased_answer"),
            perturbed_answers=tuple(perturbed),
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, ()) and k != "source"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _as_item(value: "PromptItem | str | dict[str, Any]", source: str) -> PromptItem:
    if isinstance(value, PromptItem):
        return value
    if isinstance(value, str):
        return PromptItem(value, source=source)
    return PromptItem.from_dict(value, source)


def read_items(source: "str | Path | Iterable[PromptItem | str | dict[str, Any]]", *, name: str = "items") -> list[PromptItem]:
    """Items from a ``.jsonl``/``.json`` file (JSON Lines; a ``.json`` file may also hold one array), a
    plain-text file (one prompt a line), or an iterable of items, strings or dicts.

    Blank lines are skipped. Every malformed line is reported at once, with its line number.
    """
    if not isinstance(source, (str, Path)):
        items = [_as_item(v, f"{name}[{i}]") for i, v in enumerate(source)]
        if not items:
            raise ItemsError(f"{name} is empty")
        return items
    path = Path(source)
    if not path.exists():
        raise ItemsError(f"{name} file {path} does not exist")
    if not path.is_file():
        raise ItemsError(f"{name} path {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ItemsError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ItemsError(f"cannot read {path}: {exc.strerror or exc}") from None
    structured = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            return read_items(json.loads(text), name=str(path))
        except json.JSONDecodeError as exc:
            raise ItemsError(f"{path} is not valid JSON: {exc}") from None
    items, problems = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            if structured:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ItemsError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                items.append(PromptItem.from_dict(data, where))
            else:
                items.append(PromptItem(line.strip(), source=where))
        except ItemsError as exc:
            problems.append(str(exc))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ItemsError(f"{len(problems)} malformed line(s) in {path}:\n  {shown}")
    if not items:
        raise ItemsError(f"{name} file {path} holds no prompts")
    return items


def normalize_prompt(text: str) -> str:
    """Casefolded text with whitespace collapsed: two prompts equal under it are the same prompt."""
    return " ".join(text.casefold().split())


def find_overlap(first: Sequence[PromptItem], second: Sequence[PromptItem]) -> list[tuple[PromptItem, PromptItem]]:
    """Pairs of items, one from each list, whose prompts are the same after normalisation."""
    index: dict[str, PromptItem] = {}
    for item in first:
        index.setdefault(normalize_prompt(item.prompt), item)
    return [(index[key], item) for item in second if (key := normalize_prompt(item.prompt)) in index]


def general_prompts() -> list[PromptItem]:
    """The built-in pool of everyday prompts (written for this project), used as general negatives."""
    resource = resources.files("eco_unlearn") / "data" / "general_prompts.jsonl"
    with resources.as_file(resource) as path:
        return read_items(path, name="built-in general prompts")
