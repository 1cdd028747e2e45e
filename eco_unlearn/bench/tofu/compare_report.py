"""The comparison's table rows and its scatter plot (forget quality, log, against utility)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..saving import png_figure

__all__ = ["markdown_table", "plot_compare", "table_rows"]


def table_rows(methods: dict[str, Any], references: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per model: the references (retain, target) first, then each method's chosen model."""
    target_utility = references["target"].get("model_utility")
    rows = []
    for name, entry in [*((k, {"summary": v}) for k, v in references.items()), *methods.items()]:
        summary = entry["summary"]
        utility = summary.get("model_utility")
        seconds = entry.get("seconds", {})
        row = {
            "method": name,
            "forget_quality": summary.get("forget_quality"),
            "model_utility": utility,
            "utility_ratio": utility / target_utility if utility is not None and target_utility else None,
            "forget_rouge_l": summary.get("forget_Q_A_ROUGE"),
            "forget_prob": summary.get("forget_Q_A_Prob"),
            "cost_seconds": seconds.get("fit_mean", seconds.get("best_point")),
            "grid_seconds": seconds.get("grid"),
            "peak_rss_gb": entry["peak_rss_bytes"] / 2**30 if entry.get("peak_rss_bytes") else None,
            "cost_cpus": sorted({timed.get("cpu", "unrecorded") for timed in [*entry.get("points", []), *entry.get("seeds", [])]}),
        }
        if "forget_quality" in entry and isinstance(entry["forget_quality"], dict):  # ECO: over seeds
            spread = entry["forget_quality"]
            row.update(forget_quality_mean=spread["mean"], forget_quality_min=spread["min"], forget_quality_max=spread["max"],
                       seeds=len(entry["seeds"]))
        if "best" in entry:
            row.update(learning_rate=entry["best"]["learning_rate"], epochs=entry["best"]["epochs"], floor_met=entry["floor_met"])
        rows.append(row)
    return rows


_COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "gold", "black", "tab:gray")
_MARKERS = "o*sDv^<>PXh"


def plot_compare(methods: dict[str, Any], references: dict[str, dict[str, float]], path: str | Path, *, title: str) -> Path:
    """Forget quality (log) against model utility without ROUGE (which grid points have too): one marker per
    method at its chosen model, its grid points faded, ECO's seeds each, the references in green and red."""
    floor = 1e-20
    with png_figure(path, (7.2, 5.0)) as ax:
        for name, colour in (("retain", "tab:green"), ("target", "tab:red")):
            s = references[name]
            ax.scatter(s["model_utility_no_rouge"], max(s["forget_quality"], floor), color=colour, marker="X", s=90, zorder=4)
            ax.annotate(name, (s["model_utility_no_rouge"], max(s["forget_quality"], floor)), xytext=(5, 4), textcoords="offset points")
        for k, (name, entry) in enumerate(methods.items()):
            colour, marker = _COLOURS[k % len(_COLOURS)], _MARKERS[k % len(_MARKERS)]
            for point in entry.get("points", []):
                s = point["summary"]
                ax.scatter(s["model_utility_no_rouge"], max(s["forget_quality"], floor), color=colour, marker=marker, alpha=0.25, s=30)
            for seed in entry.get("seeds", []):
                s = seed["summary"]
                ax.scatter(s["model_utility_no_rouge"], max(s["forget_quality"], floor), color=colour, marker=marker, alpha=0.5, s=50)
            s = entry["summary"]
            ax.scatter(s["model_utility_no_rouge"], max(s["forget_quality"], floor), color=colour, marker=marker, s=90,
                       zorder=3, label=name, edgecolors="black", linewidths=0.5)
        ax.set_yscale("log")
        ax.axhline(0.05, color="gray", linestyle=":", linewidth=1)
        ax.set_xlabel("model utility without ROUGE (harmonic mean of 6 retain-side numbers)")
        ax.set_ylabel("forget quality (KS-test p-value, log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if methods:
            ax.legend(fontsize=8, ncol=2)
    return Path(path)


def _cell(value: Any, digits: str = ".3f") -> str:
    return "-" if value is None else format(value, digits)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown (what the CLI prints and docs/baselines.md shows)."""
    head = ("method", "forget quality", "model utility", "utility / target", "forget ROUGE-L", "forget prob",
            "cost (s)", "grid (s)", "peak RSS (GB)", "chosen")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        quality = _cell(r["forget_quality"], ".3g")
        if "forget_quality_min" in r:
            quality += f" (mean {r['forget_quality_mean']:.3g}, {r['forget_quality_min']:.3g}-{r['forget_quality_max']:.3g}, {r['seeds']} seeds)"
        chosen = f"lr {r['learning_rate']:g}, {r['epochs']} ep" + ("" if r["floor_met"] else ", below floor") if "learning_rate" in r else ""
        lines.append("| " + " | ".join((
            r["method"], quality, _cell(r["model_utility"]), _cell(r["utility_ratio"]), _cell(r["forget_rouge_l"]),
            _cell(r["forget_prob"]), _cell(r["cost_seconds"], ".0f"), _cell(r["grid_seconds"], ".0f"), _cell(r["peak_rss_gb"], ".2f"),
            chosen,
        )) + " |")
    cpus = sorted({cpu for r in rows for cpu in r.get("cost_cpus", [])})
    if len(cpus) > 1:
        lines.append(f"\nCosts were measured on {len(cpus)} CPUs ({'; '.join(cpus)}): compare them only within one CPU.")
    return "\n".join(lines)
