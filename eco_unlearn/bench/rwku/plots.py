"""The RWKU figures: known facts still answered per level (forget: lower is better; neighbours: higher),
and the classifier's false-negative rate per attack, plain against hardened."""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..saving import png_figure

__all__ = ["plot_attacks", "plot_latency", "plot_levels"]


def plot_levels(overall: dict[str, dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """Bars of ``known_still_answered`` (guarded) per kind/level, with the floors as dashed lines."""
    groups = [g for g in ("forget/level1", "forget/level2", "forget/level3", "neighbor/level1", "neighbor/level2")
              if g in overall and overall[g].get("known_still_answered") is not None]
    with png_figure(path, (7, 3.5)) as ax:
        values = [overall[g]["known_still_answered"] for g in groups]
        ax.bar(range(len(groups)), values, color=["tab:red" if g.startswith("forget") else "tab:green" for g in groups])
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={overall[g]['known']})" for g in groups], fontsize=8)
        ax.axhline(0.05, ls="--", c="tab:red", lw=0.8)
        ax.axhline(0.95, ls="--", c="tab:green", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("known facts still answered")
        ax.set_title(title, fontsize=9)


def plot_attacks(runs: Sequence[Any], path: str | os.PathLike) -> None:
    """Horizontal bars of FNR per group (levels, level-3 types, attacks) for each classifier run given."""
    groups = sorted({g for r in runs for g in r.fnr})
    with png_figure(path, (8, max(3, 0.22 * len(groups) * len(runs)))) as ax:
        height = 0.8 / max(len(runs), 1)
        for k, run in enumerate(runs):
            ax.barh([i + k * height for i in range(len(groups))], [run.fnr.get(g, 0.0) for g in groups], height,
                    label=f"{run.variant} ({run.people} people)")
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(groups))], groups, fontsize=7)
        ax.axvline(0.05, ls="--", c="k", lw=0.8)
        ax.set_xlabel("classifier false-negative rate")
        ax.legend(fontsize=7)


def plot_latency(curve: Any, path: str | os.PathLike) -> None:
    """ms per prompt against the number of people, plain and hardened, log scales, the 5 ms floor dashed."""
    with png_figure(path, (6, 3.5)) as ax:
        ax.plot(curve.people, curve.plain_ms_per_prompt, "o-", label="plain (keywords + MiniLM)")
        ax.plot(curve.people, curve.hardened_ms_per_prompt, "o-", label="hardened (names index + lexical)")
        ax.axhline(5.0, ls="--", c="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("people in the guard")
        ax.set_ylabel(f"ms per prompt (batch {curve.batch_size})")
        ax.legend(fontsize=7)
