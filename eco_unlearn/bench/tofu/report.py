"""TOFU results as a table, a check against the project's floors, and a forget-quality / utility plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..saving import png_figure

__all__ = ["COLUMNS", "FLOORS", "check_floors", "plot_tradeoff", "summary_rows"]

# (summary key, column title)
COLUMNS = (
    ("forget_quality", "forget quality"),
    ("model_utility", "model utility"),
    ("forget_Q_A_ROUGE", "forget ROUGE-L"),
    ("forget_Q_A_Prob", "forget prob"),
    ("forget_truth_ratio", "forget truth ratio"),
    ("retain_Q_A_ROUGE", "retain ROUGE-L"),
    ("forget_flagged", "forget flagged"),
    ("retain_flagged", "retain flagged"),
)

FLOORS = {
    "target_forget_rouge_min": 0.6,
    "target_forget_quality_max": 0.01,
    "eco_forget_quality_min": 0.1,
    "eco_utility_ratio_min": 0.98,
}


def summary_rows(summaries: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per model with the table's columns (None where a number is missing)."""
    return [{"model": name, **{key: summary.get(key) for key, _ in COLUMNS}} for name, summary in summaries.items()]


def check_floors(target: dict[str, float], eco: dict[str, float]) -> dict[str, Any]:
    """Whether the target learned the forget set and ECO unlearned it at little cost to utility."""
    ratio = eco["model_utility"] / target["model_utility"] if target.get("model_utility") else None
    checks = {
        "target_forget_rouge": target["forget_Q_A_ROUGE"],
        "target_forget_quality": target.get("forget_quality"),
        "eco_forget_quality": eco.get("forget_quality"),
        "eco_utility_ratio": ratio,
    }
    checks["passed"] = {
        "target_learned": checks["target_forget_rouge"] >= FLOORS["target_forget_rouge_min"],
        "target_distinguishable": checks["target_forget_quality"] is not None  # 0.0 (p-value underflow) passes
        and checks["target_forget_quality"] < FLOORS["target_forget_quality_max"],
        "eco_forget_quality": (checks["eco_forget_quality"] or 0.0) >= FLOORS["eco_forget_quality_min"],
        "eco_utility": ratio is not None and ratio >= FLOORS["eco_utility_ratio_min"],
    }
    return checks


def plot_tradeoff(summaries: dict[str, dict[str, float]], path: str | Path, *, title: str = "TOFU") -> Path:
    """Forget quality (log scale) against model utility, one point per model; written atomically as PNG."""
    colours = {"retain": "tab:green", "target": "tab:red", "eco": "tab:blue"}
    with png_figure(path, (5.5, 4.2)) as ax:
        for name, summary in summaries.items():
            quality, utility = summary.get("forget_quality"), summary.get("model_utility")
            if quality is None or utility is None:
                continue
            ax.scatter(utility, max(quality, 1e-20), s=70, color=colours.get(name, "tab:gray"), zorder=3)
            ax.annotate(name, (utility, max(quality, 1e-20)), textcoords="offset points", xytext=(6, 4))
        ax.set_yscale("log")
        ax.axhline(0.05, color="gray", linestyle=":", linewidth=1)
        ax.set_xlabel("model utility (harmonic mean of 9 retain-side numbers)")
        ax.set_ylabel("forget quality (KS-test p-value, log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    return Path(path)
