"""RWKU (Jin et al., 2024): real people to forget, with forget probes at three levels and neighbour probes
about related people that must survive. Local copy (``rwku/N_Name/*.json``, targets 1-100) or the hub's
``jinzhuoran/RWKU``. The probes are test data: nothing here is meant to train, calibrate or select a guard."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DatasetError
from ..extras import require
from .local import DATA_ENV, read_json_rows

__all__ = [
    "HUB_DATASET", "PROBE_SETS", "RwkuProbe", "RwkuTarget", "load_rwku", "parse_target_spec", "rwku_dir",
]

HUB_DATASET = "jinzhuoran/RWKU"
PROBE_SETS = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2")
_FOLDER = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class RwkuProbe:
    """One probe. ``kind`` is ``forget`` or ``neighbor``; ``type`` is RWKU's (``cloze``, ``simple question``,
    or a level-3 attack such as ``prefix injection``); ``neighbor`` names the related person of a neighbour probe."""

    target_id: int
    subject: str
    kind: str
    level: int
    type: str
    query: str
    answer: str
    neighbor: str = ""
    source: str = ""

    @property
    def key(self) -> str:
        """A stable identifier (the cache key of a generation together with the prompt)."""
        return self.source


@dataclass(frozen=True)
class RwkuTarget:
    """A person to forget: RWKU's id, name, one-line intro, Wikipedia passages and every probe."""

    id: int
    name: str
    intro: str
    passages: tuple[str, ...]
    probes: tuple[RwkuProbe, ...]

    def select(self, kind: str, levels: Sequence[int] | None = None) -> list[RwkuProbe]:
        """The probes of ``kind`` (``forget`` or ``neighbor``), optionally of some ``levels`` only."""
        return [p for p in self.probes if p.kind == kind and (levels is None or p.level in levels)]


def parse_target_spec(spec: str | Sequence[int]) -> tuple[int, ...]:
    """Target ids from ``"1-10,12"`` (or a sequence of ints), sorted, without duplicates."""
    if not isinstance(spec, str):
        ids = {int(i) for i in spec}
    else:
        ids = set()
        for part in (p.strip() for p in spec.split(",")):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if match is None:
                raise DatasetError(f"bad target list {spec!r}: use ids and ranges such as 1-10,12")
            low, high = int(match[1]), int(match[2] or match[1])
            if high < low:
                raise DatasetError(f"bad target range {part!r}: the end is before the start")
            ids.update(range(low, high + 1))
    if not ids or min(ids) < 1:
        raise DatasetError(f"bad target list {spec!r}: ids start at 1")
    return tuple(sorted(ids))


def _text(row: dict, field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: {field!r} must be a non-empty string")
    return value


def _probe(row: object, where: str, target_id: int, kind: str) -> RwkuProbe:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    level = row.get("level")
    try:
        level = int(level)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'level' must be 1, 2 or 3, got {level!r}") from None
    answer = row.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # a few answers are years stored as numbers
    if not isinstance(answer, str) or not answer.strip():
        raise DatasetError(f"{where}: 'answer' must be a non-empty string")
    return RwkuProbe(
        target_id=target_id, subject=_text(row, "subject", where), kind=kind, level=level,
        type=str(row.get("type") or ""), query=_text(row, "query", where), answer=answer.strip(),
        neighbor=str(row.get("neighbor") or ""), source=where,
    )


def _local_target(folder: Path, target_id: int, name: str) -> RwkuTarget:
    intro_rows = read_json_rows(folder / "intro.json") if (folder / "intro.json").is_file() else []
    intro = str(intro_rows[0][0].get("intro", "")) if intro_rows and isinstance(intro_rows[0][0], dict) else ""
    passages = []
    if (folder / "passage.json").is_file():
        for row, where in read_json_rows(folder / "passage.json"):
            passages.append(_text(row, "text", where) if isinstance(row, dict) else _text({}, "text", where))
    probes: list[RwkuProbe] = []
    for probe_set in PROBE_SETS:
        path = folder / f"{probe_set}.json"
        if not path.is_file():
            raise DatasetError(f"RWKU target folder {folder} has no {path.name}")
        kind = probe_set.split("_")[0]
        for i, (row, where) in enumerate(read_json_rows(path)):
            probes.append(_probe(row, f"{target_id}:{probe_set}[{i}]", target_id, kind))
    subject = probes[0].subject if probes else name.replace("_", " ")
    return RwkuTarget(target_id, subject, intro, tuple(passages), tuple(probes))


def _local(folder: Path, ids: tuple[int, ...] | None) -> list[RwkuTarget]:
    found: dict[int, Path] = {}
    for child in folder.iterdir():
        match = _FOLDER.match(child.name)
        if child.is_dir() and match:
            found[int(match[1])] = child
    wanted = ids if ids is not None else tuple(sorted(found))
    missing = [i for i in wanted if i not in found]
    if missing:
        raise DatasetError(
            f"RWKU target(s) {', '.join(map(str, missing))} not in {folder} (it holds {len(found)} targets, "
            f"ids {min(found, default=0)}-{max(found, default=0)})"
        )
    return [_local_target(found[i], i, _FOLDER.match(found[i].name)[2]) for i in wanted]


def _hub(ids: tuple[int, ...] | None) -> list[RwkuTarget]:
    datasets = require("datasets", "hub", "loading RWKU from the hub")
    try:
        names = [str(r["target"]) for r in datasets.load_dataset(HUB_DATASET, "forget_target", split="train")]
        sets = {s: list(datasets.load_dataset(HUB_DATASET, s, split="test")) for s in PROBE_SETS}
    except Exception as exc:  # offline, hub errors: all mean the same to the user
        raise DatasetError(
            f"cannot load RWKU from the hub ({HUB_DATASET}): {exc}. Offline, give a local copy with --data-dir "
            "or $ECO_UNLEARN_DATA"
        ) from None
    wanted = ids if ids is not None else tuple(range(1, len(names) + 1))
    if max(wanted) > len(names):
        raise DatasetError(f"RWKU has {len(names)} targets on the hub; asked for id {max(wanted)}")
    targets = []
    for i in wanted:
        name = names[i - 1]
        probes = [
            _probe(dict(row), f"{i}:{s}[{j}]", i, s.split("_")[0])
            for s in PROBE_SETS for j, row in enumerate(r for r in sets[s] if r.get("subject") == name)
        ]
        targets.append(RwkuTarget(i, name, "", (), tuple(probes)))
    return targets


def load_rwku(
    targets: str | Sequence[int] | None = None, data_dir: str | os.PathLike | None = None
) -> list[RwkuTarget]:
    """RWKU targets (``"1-10"``, ids, or None for every one) from ``data_dir`` (or ``$ECO_UNLEARN_DATA``;
    the folder itself or one holding ``rwku/``), else from the hub (needs the ``hub`` extra)."""
    ids = parse_target_spec(targets) if targets is not None else None
    folder = rwku_dir(data_dir)
    return _local(folder, ids) if folder is not None else _hub(ids)


def _holds_targets(folder: Path) -> bool:
    return folder.is_dir() and any(_FOLDER.match(c.name) and (c / "forget_level1.json").is_file() for c in folder.iterdir())


def rwku_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local RWKU folder: ``data_dir`` (or ``$ECO_UNLEARN_DATA``) or its ``rwku`` sub-folder, whichever
    holds ``N_Name/`` target folders; None when neither is given (the hub). RWKU has no marker file, so this
    looks for target folders where ``local.resolve_dataset_dir`` looks for one file."""
    given = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not given:
        return None
    root = Path(given).expanduser()
    for candidate in (root / "rwku", root):
        if _holds_targets(candidate):
            return candidate
    source = "--data-dir" if data_dir is not None else f"${DATA_ENV}"
    raise DatasetError(f"no rwku data in {root} ({source}): expected N_Name/forget_level1.json folders there or in {root / 'rwku'}")
