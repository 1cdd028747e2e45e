"""TOFU splits: loading from a local folder or the hub, schema checks, and the benchmark presets.

TOFU (Maini et al., 2024) has 200 fictitious authors with 20 question-answer pairs each. ``full`` is the
4,000 training pairs (author ``k`` owns rows ``20k`` to ``20k + 19``); ``forgetNN`` is the last NN % of the
authors and ``retainNN`` the rest; the ``_perturbed`` splits add the paraphrased and perturbed answers the
truth ratio needs; ``holdoutNN`` authors are in no training split.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ...errors import TofuDataError
from ...data.items import PromptItem
from ...data.local import DATA_ENV, read_json_rows

__all__ = [
    "AUTHOR_ROWS",
    "DATA_ENV",
    "HOLDOUT_SPLITS",
    "HUB_DATASET",
    "PRESETS",
    "SPLIT_FIELDS",
    "TofuDataError",
    "TofuPreset",
    "TofuSplits",
    "author_names",
    "entity_phrases",
    "load_split",
    "load_splits",
    "resolve_data_dir",
]

HUB_DATASET = "locuslab/TOFU"
AUTHOR_ROWS = 20

_QA = ("question", "answer")
_PERTURBED = ("question", "answer", "paraphrased_answer", "perturbed_answer")
_OPTIONS = ("question", "answer", "perturbed_answer")
HOLDOUT_SPLITS = ("holdout01", "holdout05", "holdout10")  # nested: the 2, 10 and 20 authors of no training split
SPLIT_FIELDS: dict[str, tuple[str, ...]] = {
    "full": _QA,
    **{f"{kind}{nn}": _QA for kind in ("forget", "holdout") for nn in ("01", "05", "10")},
    **{f"retain{nn}": _QA for nn in ("90", "95", "99")},
    **{f"forget{nn}_perturbed": _PERTURBED for nn in ("01", "05", "10")},
    "retain_perturbed": _PERTURBED,
    "real_authors": (*_QA, "option1", "option2", "option3", "option4"),
    "world_facts": (*_QA, "option1", "option2", "option3", "option4"),
    "real_authors_perturbed": _OPTIONS,
    "world_facts_perturbed": _OPTIONS,
}



def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local TOFU folder: ``data_dir`` or ``$ECO_UNLEARN_DATA``, either the ``tofu`` folder itself or
    a folder holding ``tofu/``. None when neither is given (then splits come from the hub)."""
    given = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not given:
        return None
    root = Path(given).expanduser()
    for candidate in (root, root / "tofu"):
        if (candidate / "full.jsonl").is_file() or (candidate / "full.json").is_file():
            return candidate
    source = "--data-dir" if data_dir is not None else f"${DATA_ENV}"
    raise TofuDataError(f"no TOFU data in {root} ({source}): expected full.jsonl there or in {root / 'tofu'}")


def _check(split: str, rows: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    fields = SPLIT_FIELDS[split]
    problems = []
    for row, where in rows:
        if not isinstance(row, dict):
            problems.append(f"{where}: expected a JSON object, got {type(row).__name__}")
            continue
        missing = [f for f in fields if f not in row]
        if missing:
            problems.append(f"{where}: missing field(s) {', '.join(missing)}")
        elif not all(isinstance(row[f], str) and row[f].strip() for f in ("question", "answer")):
            problems.append(f"{where}: 'question' and 'answer' must be non-empty strings")
        elif "perturbed_answer" in fields and not (
            isinstance(row["perturbed_answer"], list) and row["perturbed_answer"]
            and all(isinstance(a, str) for a in row["perturbed_answer"])
        ):
            problems.append(f"{where}: 'perturbed_answer' must be a non-empty list of strings")
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise TofuDataError(f"TOFU split {split!r} does not have the expected schema:\n  {shown}")
    if not rows:
        raise TofuDataError(f"TOFU split {split!r} is empty")
    return [row for row, _ in rows]


def load_split(split: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Rows of one TOFU split, from ``data_dir`` (or ``$ECO_UNLEARN_DATA``), else from the hub copy."""
    if split not in SPLIT_FIELDS:
        raise TofuDataError(f"unknown TOFU split {split!r}; known: {', '.join(SPLIT_FIELDS)}")
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        path = next((folder / f"{split}{ext}" for ext in (".jsonl", ".json") if (folder / f"{split}{ext}").is_file()), None)
        if path is None:
            raise TofuDataError(f"TOFU split {split!r} not found in {folder} (expected {split}.jsonl)")
        return _check(split, read_json_rows(path, TofuDataError))
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(HUB_DATASET, f"{split}.json", repo_type="dataset"))
    except Exception as exc:  # offline, no such file, hub errors: all mean the same to the user
        raise TofuDataError(
            f"cannot download TOFU split {split!r} from the hub ({HUB_DATASET}): {exc}. Offline, give a local copy "
            f"with --data-dir or ${DATA_ENV}"
        ) from None
    return _check(split, read_json_rows(path, TofuDataError))


@dataclass(frozen=True)
class TofuPreset:
    """Which rows train the target and retain models and which rows each metric reads.

    ``authors``: how many authors from the start of ``full`` are kept besides the forget authors (None:
    all of them). The retain-side metrics read the ``retain_perturbed`` rows of the kept authors.
    """

    name: str
    forget: str
    holdout: str
    authors: int | None = None
    description: str = ""

    @property
    def forget_fraction(self) -> int:
        return int(self.forget.removeprefix("forget"))


PRESETS: dict[str, TofuPreset] = {
    "mini": TofuPreset(
        "mini", "forget01", "holdout01", authors=18,
        description="18 retain authors + the 2 forget01 authors (400 pairs, forget = 10 %): fits a CPU",
    ),
    **{
        f"forget{nn}": TofuPreset(f"forget{nn}", f"forget{nn}", f"holdout{nn}", description=f"the published forget{nn} setting, all 200 authors")
        for nn in ("01", "05", "10")
    },
}


def _item(row: dict[str, Any], where: str) -> PromptItem:
    paraphrased = row.get("paraphrased_answer")
    return PromptItem(
        row["question"],
        answer=row["answer"],
        paraphrased_answer=paraphrased,
        perturbed_answers=tuple(row.get("perturbed_answer") or ()),
        source=where,
    )


@dataclass
class TofuSplits:
    """Everything one TOFU run reads, as items (question, answer, paraphrased and perturbed answers)."""

    preset: TofuPreset
    target_train: list[PromptItem]
    retain_train: list[PromptItem]
    forget: list[PromptItem]
    forget_paraphrased_questions: list[str]
    retain: list[PromptItem]
    real_authors: list[PromptItem]
    world_facts: list[PromptItem]
    holdout: list[PromptItem]
    forget_authors: list[str]
    data_dir: str | None = None  # where the splits were read (None: the hub copy), for splits read later

    def holdout_items(self, split: str | None = None) -> list[PromptItem]:
        """The questions of a holdout split (authors in no training split): ``holdout``, or another such split
        (``holdout01``, ``holdout05``, ``holdout10``) read from where these splits came from."""
        if split is None or split == self.preset.holdout:
            return self.holdout
        if split not in HOLDOUT_SPLITS:
            raise TofuDataError(f"unknown holdout split {split!r}; choose one of {', '.join(HOLDOUT_SPLITS)}")
        return [_item(r, f"{split}[{i}]") for i, r in enumerate(load_split(split, self.data_dir))]

    @property
    def eval_sets(self) -> dict[str, list[PromptItem]]:
        return {"forget": self.forget, "retain": self.retain, "real_authors": self.real_authors, "world_facts": self.world_facts}


def load_splits(preset: str | TofuPreset, data_dir: str | os.PathLike | None = None) -> TofuSplits:
    """Load and assemble every split a TOFU run of ``preset`` needs, checking they fit together."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise TofuDataError(f"unknown TOFU preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    folder = resolve_data_dir(data_dir)
    full = load_split("full", data_dir)
    forget_rows = load_split(preset.forget, data_dir)
    n_forget = len(forget_rows)
    if [r["question"] for r in full[-n_forget:]] != [r["question"] for r in forget_rows]:
        raise TofuDataError(f"{preset.forget} is not the last {n_forget} rows of full; the data folder is inconsistent")
    keep = len(full) - n_forget if preset.authors is None else preset.authors * AUTHOR_ROWS
    if keep > len(full) - n_forget:
        raise TofuDataError(f"preset {preset.name!r} wants {preset.authors} retain authors; the data has {(len(full) - n_forget) // AUTHOR_ROWS}")
    retain_rows = full[:keep]
    kept = {r["question"] for r in retain_rows}

    def items(rows: Sequence[dict[str, Any]], split: str) -> list[PromptItem]:
        return [_item(r, f"{split}[{i}]") for i, r in enumerate(rows)]

    forget_perturbed = load_split(f"{preset.forget}_perturbed", data_dir)
    if [r["question"] for r in forget_perturbed] != [r["question"] for r in forget_rows]:
        raise TofuDataError(f"{preset.forget}_perturbed does not hold the questions of {preset.forget} in order")
    retain_perturbed = [r for r in load_split("retain_perturbed", data_dir) if r["question"] in kept]
    if not retain_perturbed:
        raise TofuDataError("none of the retain_perturbed rows belongs to the retain authors of this preset")
    retain_train = items(retain_rows, "full")
    forget = items(forget_perturbed, f"{preset.forget}_perturbed")
    return TofuSplits(
        preset=preset,
        target_train=retain_train + items(forget_rows, preset.forget),
        retain_train=retain_train,
        forget=forget,
        forget_paraphrased_questions=[r["paraphrased_question"] for r in forget_perturbed if r.get("paraphrased_question")],
        retain=items(retain_perturbed, "retain_perturbed"),
        real_authors=items(load_split("real_authors_perturbed", data_dir), "real_authors_perturbed"),
        world_facts=items(load_split("world_facts_perturbed", data_dir), "world_facts_perturbed"),
        holdout=items(load_split(preset.holdout, data_dir), preset.holdout),
        forget_authors=author_names([r["question"] for r in forget_rows]),
        data_dir=None if folder is None else str(folder.resolve()),
    )


_CAPITALISED = re.compile(r"[A-Z][\w'’\-]*(?:\s+(?:[A-Z][\w'’\-]*|al|el|de|del|van|von|bin|ibn|da|di|la|le|du|y)){1,4}")
_LEADING = {
    "What", "Who", "Where", "When", "Which", "How", "Why", "Has", "Have", "Had", "Is", "Are", "Was", "Were",
    "Does", "Do", "Did", "Can", "Could", "Would", "Will", "In", "On", "For", "From", "Apart", "Besides", "Aside",
    "As", "At", "By", "With", "Of", "To", "The", "A", "An", "And", "But", "Please", "Tell", "Name", "Describe",
}


def _phrases(text: str) -> set[str]:
    found = set()
    for match in _CAPITALISED.findall(text):
        words = re.sub(r"['’]s\b", "", match).strip(" ,.;:'’-").split()
        while words and words[0] in _LEADING:
            words = words[1:]
        while words and words[-1].islower():  # a trailing connector ("di", "de") belongs to the next word
            words = words[:-1]
        if len(words) >= 2:
            found.add(" ".join(words))
    return found


def author_names(questions: Sequence[str]) -> list[str]:
    """The author of each block of 20 TOFU questions: the capitalised name its questions mention most."""
    names = []
    for start in range(0, len(questions), AUTHOR_ROWS):
        counts = Counter(p for q in questions[start : start + AUTHOR_ROWS] for p in _phrases(q))
        if counts:
            names.append(counts.most_common(1)[0][0])
    return names


def entity_phrases(forget: Sequence[PromptItem], retain: Sequence[PromptItem], names: Sequence[str] = ()) -> list[str]:
    """Names, places and titles of the forget scope: ``names`` plus capitalised phrases and quoted titles
    found in at least two forget questions or answers and in no retain row."""
    counts: Counter[str] = Counter()
    for item in forget:
        text = f"{item.prompt} {item.answer or ''}"
        counts.update(_phrases(text) | set(re.findall(r"[\"“]([A-Z][^\"”]{3,60}?)[,.]?[\"”]", text)))
    retain_text = " ".join(f"{i.prompt} {i.answer or ''}" for i in retain).lower()
    kept = list(names)
    for phrase, n in counts.most_common():
        if n >= 2 and phrase.lower() not in retain_text and not any(k.lower() in phrase.lower() for k in kept):
            kept.append(phrase)
    return kept
