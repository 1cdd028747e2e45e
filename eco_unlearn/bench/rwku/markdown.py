"""Markdown tables of the classifier benchmarks, for docs and results folders: pure functions of the reports."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["attacks_markdown", "latency_markdown"]


def _groups(runs: Sequence[Any]) -> list[str]:
    order = lambda g: (not g.startswith("level"), g)  # noqa: E731  levels first, then attacks
    return sorted({g for r in runs for g in r.fnr}, key=order)


def attacks_markdown(runs: Sequence[Any]) -> str:
    """FNR per level, level-3 type and attack (with the number of prompts) for each run that has them, then
    FPR on MMLU (all, and naming none of the people) and neighbours and ms per prompt for every run."""
    attacked = [r for r in runs if r.fnr]
    lines = ["| group | " + " | ".join(f"{r.variant} FNR (n)" for r in attacked) + " |",
             "|---|" + "---:|" * len(attacked)]
    for g in _groups(attacked):
        cells = [f"{r.fnr[g]:.1%} ({r.positives[g]})" if g in r.fnr else "-" for r in attacked]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += ["", "| run | people | threshold | FPR MMLU (n) | FPR MMLU naming none of them (n) | FPR neighbours (n) | "
              "ms/prompt (batch 32) | prompts/s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        ms = r.seconds_per_prompt * 1000
        unnamed = f"{r.fpr['mmlu_unnamed']:.2%} ({r.negatives['mmlu_unnamed']})" if "mmlu_unnamed" in r.fpr else "-"
        lines.append(f"| {r.variant} | {r.people} | {r.threshold:.3f} | {r.fpr['mmlu']:.2%} ({r.negatives['mmlu']}) | "
                     f"{unnamed} | {r.fpr['neighbor']:.2%} ({r.negatives['neighbor']}) | {ms:.2f} | {1000 / ms:.0f} |")
    return "\n".join(lines) + "\n"


def latency_markdown(curve: Any) -> str:
    """ms per prompt and prompts per second, plain and hardened, per number of people."""
    lines = [f"batch {curve.batch_size}, {curve.prompts} prompts, {curve.threads} thread(s), load average "
             f"{', '.join(map(str, curve.load_average))}", "",
             "| people | plain ms/prompt | plain prompts/s | hardened ms/prompt | hardened prompts/s "
             "| plain / hardened |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, p, h, s in zip(curve.people, curve.plain_ms_per_prompt, curve.hardened_ms_per_prompt, curve.speedup):
        lines.append(f"| {n} | {p:.2f} | {1000 / p:.0f} | {h:.3f} | {1000 / h:.0f} | {s:.0f}x |")
    return "\n".join(lines) + "\n"
