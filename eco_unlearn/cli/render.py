"""Rendering of the library's reports as rich tables: pure presentation, no work."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Sequence

from rich.table import Table

from .console import err, out, wide

if TYPE_CHECKING:
    from ..fitting import FitReport

__all__ = [
    "answers_table", "classifier_bench_tables", "fit_report", "guard_table", "models_table", "overhead_table",
    "serve_bench_table", "tofu_checks", "tofu_models_table", "tofu_sweep_table", "tofu_table",
]


def fit_report(report: FitReport) -> None:
    """A fit report: the classifier's held-out error rates and the strength search."""
    held, cal, obj, search = report.held_out, report.calibration, report.objective, report.search
    table = Table(title=f"classifier for target {report.target!r} (held-out prompts, never seen in training or calibration)")
    for column in ("threshold", "alpha", "calibration negatives", "FPR", "FNR", "FPR on retain prompts"):
        table.add_column(column, justify="right")
    retain = f"{held.fpr_retain:.2%} of {held.retain_negatives}" if held.fpr_retain is not None else "-"
    table.add_row(
        f"{cal.threshold:.4g}", f"{cal.alpha:g}", str(cal.calibration_negatives),
        f"{held.fpr:.2%} ({held.false_positives}/{held.negatives})",
        f"{held.fnr:.2%} ({held.false_negatives}/{held.positives})", retain,
    )
    out.print(table)
    table = Table(title=f"strength search ({search.method}, {search.evaluations} evaluations of the guarded model)")
    for column in ("corruption", "strength", "objective", "target", "before", "after (all corrupted)", "after, end to end", "met"):
        table.add_column(column, justify="right")
    sign = "<=" if obj.goal == "min" else ">="
    before = f"{obj.before:.3g}" if obj.before_exact else f"{'>=' if obj.goal == 'min' else '<='} {obj.before:.3g}"
    table.add_row(
        report.corruption.name, f"{report.strength:.4g}", f"{obj.name} on {obj.items} items",
        f"{sign} {obj.target:.3g}", before, f"{obj.after:.3g}", f"{obj.after_end_to_end:.3g}",
        "[green]yes[/]" if report.met else "[red]no[/]",
    )
    out.print(table)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def answers_table(title: str, prompts: Sequence[Any], texts: Sequence[str], decisions: Sequence[Any],
                  bare: Sequence[str] | None = None) -> None:
    """Guarded answers next to the guard's decisions (and the unguarded answers, when given)."""
    table = Table(show_lines=True, title=title)
    table.add_column("prompt", ratio=2)
    table.add_column("flagged by", ratio=1)
    if bare is not None:
        table.add_column("unguarded answer", ratio=3)
    table.add_column("answer", ratio=3)
    for i, (prompt, text, decision) in enumerate(zip(prompts, texts, decisions)):
        flag = (f"[red]{', '.join(decision.targets)}[/]\n{decision.corrupted_tokens} token(s) corrupted"
                if decision.flagged else "[green]-[/]")
        cells = [str(prompt), flag] + ([bare[i].strip()] if bare is not None else []) + [text.strip()]
        table.add_row(*cells)
    out.print(table)


def before_after_table(prompts: Sequence[str], before: Sequence[str], after: Sequence[str], decisions: Sequence[Any]) -> None:
    table = Table(show_lines=True, title="answers before and after (greedy)")
    for column, ratio in (("prompt", 2), ("flagged (score)", 1), ("before", 3), ("after", 3)):
        table.add_column(column, ratio=ratio)
    for prompt, old, new, decision in zip(prompts, before, after, decisions):
        score = max(decision.scores.values())
        flag = f"[red]yes[/] ({score:.2f})" if decision.flagged else f"[green]no[/] ({score:.2f})"
        table.add_row(prompt, flag, old.strip(), new.strip())
    out.print(table)


def guard_table(path: Any, guard: Any) -> None:
    """What a guard artifact holds: fingerprint, targets, thresholds, corruptions, metadata."""
    data = guard.to_dict()
    out.print(f"[bold]guard[/] {path}  (format v{data['format_version']}, seed {guard.seed})")
    fp = guard.model_fingerprint
    out.print(
        f"model: {fp.architecture}, vocab {fp.vocab_size}, hidden {fp.hidden_size}, embeddings sha256 "
        f"{fp.embedding_sha256[:16]}..." if fp else "model: any (no fingerprint)"
    )
    table = Table(title="targets")
    for column in ("name", "classifier", "threshold", "tokens", "corruption", "calibration"):
        table.add_column(column)
    for target, entry in zip(guard.targets, data["targets"]):
        spec = target.corruption
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        tokens = target.tokens.strategy + (f" ({len(target.tokens.entities)} entities)" if target.tokens.entities else "")
        table.add_row(
            target.name, f"{entry['classifier']['kind']}", f"{target.threshold:g}", tokens,
            f"{spec.name}(strength={spec.strength:g}{', ' + params if params else ''})",
            json.dumps(target.calibration) if target.calibration else "-",
        )
    out.print(table)
    if guard.metadata:
        out.print("metadata:", guard.metadata)


def models_table(entries: Sequence[Any], cache: Any) -> None:
    table = Table(title=f"embedded models (cache: {cache})")
    for column in ("name", "description", "cached", "path"):
        table.add_column(column)
    for entry in entries:
        cached = entry.is_cached()
        table.add_row(entry.name, entry.description, "[green]yes[/]" if cached else "no (converted on first use)",
                      str(entry.cached_path()) if cached else "-")
    out.print(table)


def overhead_table(report: Any, model: str, new_tokens: int, repeats: int) -> None:
    table = Table(title=f"guard overhead, {model}, {new_tokens} new tokens, {repeats} paired repeats")
    columns = ("batch", "prompts", "bare s", "guarded s", "ratio of medians", "paired ratio (IQR)",
               "guard work ms", "guard work / bare", "peak MiB bare / guarded", "memory ratio")
    for column in columns:
        table.add_column(column, justify="right")
    for row in report.rows:
        low, high = row.paired_ratio_iqr
        memory = ((f"{row.bare_peak_mib:.0f} / {row.guarded_peak_mib:.0f}", f"{row.memory_ratio:.3f}")
                  if row.memory_ratio else ("-", "-"))
        table.add_row(
            str(row.batch_size), "flagged" if row.flagged else "clean", f"{row.bare_median_s:.3f}",
            f"{row.guarded_median_s:.3f}", f"{row.latency_ratio:.3f}",
            f"{row.paired_ratio_median:.3f} ({low:.2f}-{high:.2f})", f"{row.guard_work_ms:.2f}",
            f"{row.guard_work_fraction:.2%}", *memory,
        )
    wide().print(table)


def classifier_bench_tables(summary: Sequence[dict[str, Any]], throughput: Sequence[dict[str, Any]], alpha: float,
                            seeds: str) -> None:
    table = Table(title=f"held-out error rates at alpha={alpha:g}, pooled over seeds {seeds}")
    for column in ("task", "classifier", "FPR (errors/negatives)", "FNR (errors/positives)", "worst seed FPR / FNR",
                   "FNR on paraphrases"):
        table.add_column(column, justify="right")
    for row in summary:
        para = f"{row['paraphrase_fnr']:.2%}" if "paraphrase_fnr" in row else "-"
        table.add_row(row["task"], row["variant"], f"{row['fpr']:.2%} ({row['false_positives']}/{row['negatives']})",
                      f"{row['fnr']:.2%} ({row['false_negatives']}/{row['positives']})",
                      f"{row['worst_seed_fpr']:.2%} / {row['worst_seed_fnr']:.2%}", para)
    wide().print(table)
    table = Table(title="classifier throughput (MiniLM, length-bucketed batches)")
    for column in ("dtype", "prompts", "seconds", "prompts/s"):
        table.add_column(column, justify="right")
    for row in throughput:
        table.add_row(row["dtype"], str(row["prompts"]), f"{row['seconds']:.2f}", f"{row['prompts_per_second']:.0f}")
    out.print(table)


def serve_bench_table(report: Any, model: str, clients: int, duration: float, max_tokens: int) -> None:
    table = Table(title=f"server load, {model}, {clients} clients x {duration:g} s per mode, max_tokens {max_tokens}, greedy chat")
    columns = ("mode", "requests", "errors", "req/s", "tokens/s", "p50 s", "p99 s", "mean batch", "audit lines",
               "lost audit lines")
    for column in columns:
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(row.mode, str(row.requests), str(row.errors), f"{row.requests_per_s:.2f}", f"{row.tokens_per_s:.1f}",
                      f"{row.latency_p50_s:.2f}", f"{row.latency_p99_s:.2f}", f"{row.mean_batch_rows:.2f}",
                      str(row.audit_lines), str(row.lost_audit_lines))
    wide().print(table)


def abuse_bench_table(report: Any) -> None:
    config = report.config
    table = Table(title=f"server under abuse, {config.model}, {config.clients} ordinary clients x {config.duration_s:g} s "
                        f"per mode, max_tokens {config.max_tokens}; p99 ratio {report.p99_ratio:.2f}")
    for column in ("mode", "ordinary requests", "errors", "p50 s", "p99 s", "hostile requests", "audit lines",
                   "lost audit lines"):
        table.add_column(column, justify="right")
    for row in report.rows:
        table.add_row(row.mode, str(row.requests), str(row.errors), f"{row.latency_p50_s:.2f}", f"{row.latency_p99_s:.2f}",
                      str(row.hostile_requests), str(row.audit_lines), str(row.lost_audit_lines))
    wide().print(table)
    kinds = Table(title="what the hostile clients got (status: count; None: no answer, as meant)")
    kinds.add_column("attack")
    kinds.add_column("sent", justify="right")
    kinds.add_column("statuses")
    for kind, statuses in report.rows[1].hostile_statuses.items():
        kinds.add_row(kind, str(sum(statuses.values())), ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    wide().print(kinds)


def tofu_table(summaries: dict[str, dict[str, float]], title: str) -> None:
    from ..bench.tofu.report import COLUMNS, summary_rows

    table = Table(title=title)
    table.add_column("model")
    for _, column in COLUMNS:
        table.add_column(column, justify="right")
    for row in summary_rows(summaries):
        cells = [("-" if row[key] is None else f"{row[key]:.3g}" if key == "forget_quality" else f"{row[key]:.3f}")
                 for key, _ in COLUMNS]
        table.add_row(row["model"], *cells)
    wide().print(table)


def tofu_models_table(title: str, prepared: Any) -> None:
    table = Table(title=title)
    for column in ("model", "folder", "pairs", "epoch losses", "minutes"):
        table.add_column(column)
    for role, path in (("target", prepared.target), ("retain", prepared.retain)):
        run = prepared.training[role]
        losses = " ".join(f"{x:.2f}" for x in run["epoch_losses"])
        minutes = "cached" if run["cached"] else f"{run['seconds'] / 60:.1f}"
        table.add_row(role, str(path), str(run["examples"]), losses, minutes)
    wide().print(table)


def tofu_checks(checks: dict[str, Any]) -> None:
    """The TOFU floors, measured against their thresholds."""
    passed = checks["passed"]
    marks = {True: "[green]pass[/]", False: "[red]FAIL[/]"}

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    out.print(
        f"target forget ROUGE-L {number(checks['target_forget_rouge'], '.3f')} (>= 0.6: {marks[passed['target_learned']]}), "
        f"target forget quality {number(checks['target_forget_quality'], '.3g')} (< 0.01: {marks[passed['target_distinguishable']]}), "
        f"ECO forget quality {number(checks['eco_forget_quality'], '.3g')} (>= 0.1: {marks[passed['eco_forget_quality']]}), "
        f"ECO/target utility {number(checks['eco_utility_ratio'], '.3f')} (>= 0.98: {marks[passed['eco_utility']]})"
    )


def tofu_sweep_table(report: Any, model: str) -> None:
    table = Table(title=f"TOFU {report.config['preset']['name']}, {model}: strength sweep")
    for column in ("tokens", "seed", "σ", "forget quality", "surrogate", "median truth ratio"):
        table.add_column(column, justify="left" if column == "tokens" else "right")
    for row in report.sweep.rows:
        table.add_row(row["tokens"], str(row.get("seed", "")), f"{row['strength']:.4g}", f"{row['forget_quality']:.3g}", f"{row['surrogate']:.3g}",
                      f"{row['truth_ratio_median']:.3f}")
    out.print(table)
