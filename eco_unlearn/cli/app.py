"""The ``eco-unlearn`` application: every command module registered on one typer app, and ``main``."""

from __future__ import annotations

import sys

import typer

from . import bench, fit, generate, info, mcq, rwku, serve, tofu
from .console import err

try:  # recent typer vendors its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

__all__ = ["app", "main"]

app = typer.Typer(
    help="Make a language model forget chosen knowledge with embedding-corrupted prompts (ECO).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(generate.generate)
app.command()(fit.fit)
app.command()(fit.demo)
app.command()(info.inspect)
app.command()(info.models)
app.command()(serve.serve)
app.add_typer(bench.app, name="bench")
app.add_typer(tofu.app, name="tofu")
app.add_typer(rwku.app, name="rwku")
app.add_typer(mcq.app, name="mcq")


def main() -> None:
    """Console entry point: like ``app()``, but a usage error is one ``error:`` line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        err.print(exc.format_message())
        code = 2
    except click_exceptions.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        err.print(f"[bold red]error:[/] {exc.format_message()}{hint}", soft_wrap=True, highlight=False)
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        err.print("[red]interrupted[/]")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
