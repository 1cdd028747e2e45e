"""``eco-lm-eval``: lm-evaluation-harness's own command line with the ``eco`` model registered.

lm-eval 0.4 looks models up in its registry and loads no plugins, so the ``lm_eval`` command itself only
knows ``eco`` after ``import eco_unlearn.integrations.lm_eval``; this command does that import and then
runs lm-eval's CLI with the same arguments (``eco-lm-eval --model eco --model_args ... --tasks ...``).
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Register ``eco``, then run ``lm_eval`` on this process's arguments."""
    from . import lm_eval  # noqa: F401  # registers the eco model
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
