"""Options that several commands share, declared once, and the parsers of list-valued options."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import typer

__all__ = [
    "BATCH_SIZE", "CHAT", "DATA_DIR", "DEVICE", "DTYPE", "EPOCHS", "FORCE", "LEARNING_RATE", "MODEL", "PARALLEL",
    "SEED", "TRUNCATION", "ClassifierMode", "Truncation", "entities", "integers", "results_path",
]


class Truncation(str, Enum):
    error = "error"
    left = "left"


class ClassifierMode(str, Enum):
    linear = "linear"
    finetune = "finetune"


MODEL = typer.Option("smollm2", "--model", "-m", help="Embedded default, local folder or hub id.")
DTYPE = typer.Option("float32", help="float32, bfloat16 or float16.")
DEVICE = typer.Option("cpu")
SEED = typer.Option(0, "--seed")
FORCE = typer.Option(False, "--force", help="Attach a guard built for another model anyway.")
CHAT = typer.Option(None, "--chat/--no-chat", help="Wrap prompts in the chat template (default: when the model has one).")
TRUNCATION = typer.Option("error", help="Over-long prompts: 'error' refuses, 'left' drops the oldest tokens.")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder with the TOFU files (or one holding tofu/); default $ECO_UNLEARN_DATA, else the hub copy.")
EPOCHS = typer.Option(None, "--epochs", min=1)
LEARNING_RATE = typer.Option(None, "--lr", min=0.0)
BATCH_SIZE = typer.Option(None, "--batch-size", min=1)
PARALLEL = typer.Option(True, "--parallel/--sequential", help="Train (and evaluate) target and retain side by side, each on half the cores.")


def results_path(name: str) -> Path:
    """Where a benchmark command writes when ``--out`` is not given: ``$ECO_UNLEARN_RESULTS/NAME``, by default
    under ``benchmarks/results`` of the working directory (this repository's results folder)."""
    return Path(os.environ.get("ECO_UNLEARN_RESULTS", "benchmarks/results")) / name


def integers(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} must be integers separated by commas, not {text!r}") from None


def entities(spec: str | None) -> tuple[str, ...]:
    """``--entities``: comma-separated names, or ``@FILE`` with one a line."""
    from ..data import read_items

    if not spec:
        return ()
    if spec.startswith("@"):
        return tuple(item.prompt.strip() for item in read_items(spec[1:], name="entities file"))
    return tuple(part.strip() for part in spec.split(",") if part.strip())
