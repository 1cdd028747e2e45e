"""The RWKU figures: known facts still answered per level (forget: lower is better; neighbours: higher),
and the classifier's false-negative rate per attack, plain against hardened."""

from __future__ import annotations

import os
from typing import Any, Sequence

from ..saving import png_figure

__all__ = ["FLOORS", "plot_attacks", "plot_latency", "plot_levels", "plot_targets"]

FLOORS = {"forget/level1": 0.05, "forget/level2": 0.05, "forget/level3": 0.10, "neighbor/level1": 0.95,
          "neighbor/level2": 0.95}
"""The issue's floors on known facts still answered: at most these for forget levels, at least for neighbours."""


def plot_levels(overall: dict[str, dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """Bars of ``known_still_answered`` (guarded) per kind/level and per level-3 type, each forget/neighbour
    level with its floor as a short dashed line."""
    groups = [g for g in (*FLOORS, *sorted(k for k in overall if k.startswith("forget/level3/")))
              if g in overall and overall[g].get("known_still_answered") is not None]
    with png_figure(path, (max(7, 0.6 * len(groups)), 4)) as ax:
        values = [overall[g]["known_still_answered"] for g in groups]
        colors = ["tab:green" if g.startswith("neighbor") else "tab:orange" if g.count("/") == 2 else "tab:red" for g in groups]
        ax.bar(range(len(groups)), values, color=colors)
        for i, g in enumerate(groups):
            floor = FLOORS.get(g, FLOORS["forget/level3"] if g.count("/") == 2 else None)
            ax.hlines(floor, i - 0.45, i + 0.45, colors="k", linestyles="--", lw=0.8)
        labels = [f"{g.replace('forget/level3/', 'L3 ').replace('/level', ' L')}\n(n={overall[g]['known']})" for g in groups]
        ax.set_xticks(range(len(groups)), labels, fontsize=6, rotation=60, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("known facts still answered")
        ax.set_title(title + " (red: forget, lower is better; green: neighbours, higher; dashed: floors)", fontsize=8)


def plot_targets(per_target: dict[str, dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """Per target: the share of known forget facts still answered (all levels) and of known neighbour
    facts still answered, with how many are known (no bar where none is)."""
    ids = [t for t in per_target if per_target[t].get("forget/all", {}).get("known_still_answered") is not None]
    with png_figure(path, (8, 3.5)) as ax:
        for k, (kind, color) in enumerate((("forget/all", "tab:red"), ("neighbor/all", "tab:green"))):
            summaries = [per_target[t].get(kind) or {} for t in ids]
            shown = [(i, s["known_still_answered"], s["known"]) for i, s in enumerate(summaries)
                     if s.get("known_still_answered") is not None]  # no bar where nothing is known
            ax.bar([i + 0.4 * k for i, _, _ in shown], [v for _, v, _ in shown], 0.4, color=color, label=kind.split("/")[0])
            for i, v, n in shown:
                ax.text(i + 0.4 * k, v + 0.02, f"n={n}", ha="center", fontsize=6)
        ax.set_xticks([i + 0.2 for i in range(len(ids))], [per_target[t]["name"] for t in ids], fontsize=7, rotation=30, ha="right")
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("known facts still answered")
        ax.legend(fontsize=7)
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
