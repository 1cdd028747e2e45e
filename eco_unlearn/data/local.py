"""Where benchmark datasets live: a folder given at run time (``--data-dir`` or ``$ECO_UNLEARN_DATA``), else
the public hub copy. Shared by every dataset loader so that one option serves them all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import DatasetError

__all__ = ["DATA_ENV", "read_json_rows", "resolve_dataset_dir"]

DATA_ENV = "ECO_UNLEARN_DATA"


def resolve_dataset_dir(name: str, marker: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local folder of dataset ``name``: ``data_dir`` (or ``$ECO_UNLEARN_DATA``) itself or its ``name``
    sub-folder, whichever holds ``marker`` (a file or folder name). None when neither is given (load from
    the hub); a ``DatasetError`` when one is given but holds no such dataset."""
    given = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not given:
        return None
    root = Path(given).expanduser()
    for candidate in (root, root / name):
        if (candidate / marker).exists():
            return candidate
    source = "--data-dir" if data_dir is not None else f"${DATA_ENV}"
    raise DatasetError(f"no {name} data in {root} ({source}): expected {marker} there or in {root / name}")


def read_json_rows(path: str | os.PathLike, error: type[DatasetError] = DatasetError) -> list[tuple[Any, str]]:
    """Rows of a JSON array or JSON Lines file, each with where it came from (``file:line`` or ``file[i]``);
    problems raise ``error`` (a ``DatasetError`` subclass of the caller's choosing)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(rows, list):
            raise error(f"{path}: expected a JSON array or JSON Lines")
        return [(row, f"{path}[{i}]") for i, row in enumerate(rows)]
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                rows.append((json.loads(line), f"{path}:{number}"))
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    return rows
