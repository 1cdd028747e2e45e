"""What every command shares at run time: the consoles, library errors as one red line, progress, loading."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import EcoUnlearnError, RunFailure

__all__ = ["err", "errors", "guard_path", "load", "load_guard", "out", "progress", "quiet_transformers", "wide"]

out = Console()
err = Console(stderr=True)


def wide() -> Console:
    """A console at least 150 columns wide, even when stdout is not a terminal (tables of many columns)."""
    return Console(width=max(out.width, 150))


@contextmanager
def errors() -> Iterator[None]:
    """Turn library errors into one red line: exit code 2 for bad input, 1 for a failure while running."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *args, **kwargs: err.print(f"[yellow]warning:[/] {message}")
            yield
    except EcoUnlearnError as exc:
        # escape: a message is text, and "pip install 'eco-unlearn[serve]'" is not rich markup
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1 if isinstance(exc, RunFailure) else 2) from None
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        raise typer.Exit(130) from None


@contextmanager
def progress(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr, and the ``(what, done, total)`` callback the library reports to. When
    stderr is not a terminal (a log file, CI), each new step is one timestamped line instead."""
    if not err.is_terminal:
        start, last = time.perf_counter(), [description]
        err.print(f"[{0.0:8.1f}s] {description}", highlight=False)

        def log(what: str, done: int, total: int) -> None:
            if what != last[0]:
                last[0] = what
                err.print(f"[{time.perf_counter() - start:8.1f}s] {what}", highlight=False, soft_wrap=True)

        yield log
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(description, total=None)
        yield lambda what, done, total: bar.update(task, description=what, completed=done, total=total)


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI shows its own progress instead


def load(model: str, dtype: str, device: str) -> tuple[Any, Any]:
    """``load_model``, with a status line (and a note when an embedded model is converted on first use)."""
    from ..models import EMBEDDED_MODELS, load_model

    quiet_transformers()
    first = model in EMBEDDED_MODELS and not EMBEDDED_MODELS[model].is_cached()
    note = " (first use: converting the GGUF file into the cache, about 30 s)" if first else ""
    with err.status(f"Loading {model}{note}"):
        return load_model(model, dtype=dtype, device=device)


def guard_path(spec: str | None, model_name: str) -> Path | None:
    """The guard folder ``--guard`` names: a path, or 'demo' for the one ``eco-unlearn demo`` fitted."""
    from ..demo import demo_guard_path
    from ..errors import GuardError

    if spec is None:
        return None
    if spec == "demo":
        path = demo_guard_path(model_name)
        if not (path / "guard.json").is_file():
            raise GuardError(f"no demo guard for {model_name} yet: run `eco-unlearn demo --model {model_name}` first (it fits one)")
        return path
    return Path(spec)


def load_guard(spec: str | None, model_name: str):
    from ..runtime import Guard

    path = guard_path(spec, model_name)
    return None if path is None else Guard.load(path)
