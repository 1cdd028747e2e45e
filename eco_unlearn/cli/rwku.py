"""``eco-unlearn rwku ...``: score a model, guarded or not, on RWKU; measure the classifier under attack."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from . import options as opt
from .console import errors, out, progress, quiet_transformers

app = typer.Typer(help="RWKU: forget real people, keep their neighbours, under attack.", no_args_is_help=True)

DATA_DIR = typer.Option(None, "--data-dir", help="Folder with the RWKU target folders (or one holding rwku/); default $ECO_UNLEARN_DATA, else the hub.")
COLUMNS = ("forget/level1", "forget/level2", "forget/level3", "neighbor/level1", "neighbor/level2")


def _cell(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    recall = f"R {summary['rouge_l_recall']:.2f}"
    if summary.get("known_still_answered") is not None:
        return f"{recall}; {summary['known_still_answered']:.0%} of {summary['known']} known"
    return f"{recall}; {summary['known']} known"


def rwku_table(report: Any) -> None:
    """Per target and overall: ROUGE-L recall, and the share of known probes still answered."""
    table = Table(title=f"RWKU, {report.config['model']} (ROUGE-L recall; known probes still answered when guarded)")
    table.add_column("target")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for target_id, summaries in report.per_target.items():
        table.add_row(f"{target_id} {summaries['name']}", *[_cell(summaries.get(c)) for c in COLUMNS])
    table.add_row("[bold]overall[/]", *[_cell(report.overall.get(c)) for c in COLUMNS])
    out.print(table)


@app.command("run")
def run(
    targets: str = typer.Option("1-10", "--targets", help="RWKU target ids: 1-10, 3,7,12 ..."),
    model: str = typer.Option("gemma3-270m", "--model", "-m", help="Embedded default, local folder or hub id."),
    guard: Optional[Path] = typer.Option(None, "--guard", "-g", help="Guard folder; without it only the unguarded model is scored."),
    data_dir: Optional[Path] = DATA_DIR,
    levels: str = typer.Option("1,2,3", "--levels", help="Forget levels to score (neighbours: levels 1-2 among them)."),
    neighbors: bool = typer.Option(True, "--neighbors/--no-neighbors"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N probes per target and level (smoke runs)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Generation batch (decoding is memory-bound: large batches pay)."),
    known_only: bool = typer.Option(False, "--known-only", help="With --guard: generate guarded answers only for the known probes (where the floors are measured); faster."),
    reuse_unflagged: bool = typer.Option(True, "--reuse-unflagged/--regenerate-unflagged", help="With --guard: probes it does not flag keep their unguarded answers (they take the bare model's path), or are generated again."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/rwku); answers are cached there."),
) -> None:
    """Greedy answers (30 new tokens, first line), ROUGE-L recall per level and level-3 type, known probes."""
    from ..bench.rwku import RwkuRunConfig, run_rwku

    quiet_transformers()
    with errors():
        config = RwkuRunConfig(
            targets=targets, model=model, guard=str(guard) if guard else None, data_dir=str(data_dir) if data_dir else None,
            output=str(output or opt.results_path("rwku")), levels=opt.integers(levels, "--levels"), neighbors=neighbors,
            limit=limit, batch_size=batch_size, reuse_unflagged=reuse_unflagged, known_only=known_only,
        )
        with progress("RWKU") as report_progress:
            report = run_rwku(config, report_progress)
        rwku_table(report)
        best = ", ".join(f"{r['target']} {r['name']} ({r['known_forget_probes']})" for r in report.known_ranking[:10])
        out.print(f"known best (known forget probes): {best}")
        out.print(f"{report.seconds / 60:.1f} min; report.json and answers.jsonl in {config.output}")


@app.command("people")
def people(
    targets: str = typer.Option(..., "--targets", help="RWKU target ids: 4,6,65 or 1-10."),
    data_dir: Optional[Path] = DATA_DIR,
    output: Path = typer.Option(..., "--out", "-o", help="The people file to write (JSON Lines), for `eco-unlearn fit --people`."),
) -> None:
    """Write a people file from RWKU targets' names, intros and passages (never their probes)."""
    import json

    from ..data.rwku import load_rwku
    from ..fitting.about import rwku_people
    from ..io import atomic_write_text

    with errors():
        specs = rwku_people(load_rwku(targets, str(data_dir) if data_dir else None))
        lines = [json.dumps({"name": s.name, "aliases": list(s.aliases), "passage": s.passage}) for s in specs]
        atomic_write_text(output, "\n".join(lines) + "\n")
        out.print(f"{len(specs)} people ({', '.join(s.name for s in specs)}) written to {output}")


@app.command("attacks")
def attacks(
    targets: str = typer.Option("1-10", "--targets", help="The people one guard covers (RWKU ids)."),
    many: str = typer.Option("", "--many", help="Also fit one hardened guard for the first N targets, for each N (e.g. 10,100)."),
    data_dir: Optional[Path] = DATA_DIR,
    mmlu_questions: int = typer.Option(2000, "--mmlu-questions", min=100, help="Held-out MMLU questions for the FPR."),
    attacked: Optional[int] = typer.Option(None, "--attacked-per-target", min=1, help="Attack only the first N level-1/2 probes of each target (default: all)."),
    seed: int = opt.SEED,
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default benchmarks/results/rwku-classifier)."),
) -> None:
    """Classifier FNR per attack and FPR on MMLU and neighbours, plain vs hardened, fitted from names and passages only."""
    from ..bench.rwku.classifier import run_rwku_classifier
    from ..bench.rwku.markdown import attacks_markdown
    from ..bench.rwku.plots import plot_attacks
    from ..data.rwku import parse_target_spec
    from ..io import atomic_write_json, atomic_write_text

    with errors():
        folder = Path(output or opt.results_path("rwku-classifier"))
        done: list[dict] = []

        def keep(run: Any) -> None:  # a long run keeps what it measured if a later classifier fails
            done.append(asdict(run))
            atomic_write_json(folder / "runs.partial.json", done)

        with progress("RWKU classifier") as report_progress:
            report = run_rwku_classifier(
                parse_target_spec(targets), data_dir=str(data_dir) if data_dir else None,
                many=opt.integers(many, "--many") if many else (), mmlu_questions=mmlu_questions,
                attacked_per_target=attacked, seed=seed, progress=report_progress, on_run=keep,
            )
        report.save(folder / "report.json")
        (folder / "runs.partial.json").unlink(missing_ok=True)
        plot_attacks([r for r in report.runs if r.fnr], Path(folder) / "attacks.png")
        atomic_write_text(Path(folder) / "attacks.md", attacks_markdown(report.runs))
        table = Table(title="classifier: worst FNR over attacks and levels, FPR, ms per prompt (batch 32)")
        for column in ("variant", "people", "worst FNR", "FPR MMLU", "FPR neighbours", "ms/prompt"):
            table.add_column(column, justify="right")
        for r in report.runs:
            worst = max(r.fnr.items(), key=lambda kv: kv[1]) if r.fnr else ("-", 0.0)
            table.add_row(r.variant, str(r.people), f"{worst[1]:.1%} ({worst[0]})" if r.fnr else "-",
                          f"{r.fpr['mmlu']:.2%}", f"{r.fpr['neighbor']:.2%}", f"{r.seconds_per_prompt * 1000:.2f}")
        out.print(table)
        out.print(f"report.json, attacks.md and attacks.png in {folder}")


@app.command("latency")
def latency(
    people: str = typer.Option("1,10,100", "--people", help="Numbers of people (the first N RWKU targets)."),
    data_dir: Optional[Path] = DATA_DIR,
    prompts: int = typer.Option(320, "--prompts", min=32, help="Held-out MMLU questions timed."),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default benchmarks/results/rwku-classifier/latency.json)."),
) -> None:
    """Classifier ms per prompt (batch of 32) against the number of people, plain (keywords + MiniLM) and hardened."""
    from ..bench.rwku.classifier import mmlu_split
    from ..bench.rwku.latency import latency_curve
    from ..bench.rwku.markdown import latency_markdown
    from ..bench.rwku.plots import plot_latency
    from ..io import atomic_write_text
    from ..data.rwku import load_rwku

    with errors():
        counts = opt.integers(people, "--people")
        names = [t.name for t in load_rwku(f"1-{max(counts)}", str(data_dir) if data_dir else None)]
        _, held_out = mmlu_split(str(data_dir) if data_dir else None)
        with out.status("timing the classifier"):
            curve = latency_curve(names, held_out[:prompts], counts)
        path = Path(output or opt.results_path("rwku-classifier") / "latency.json")
        curve.save(path)
        plot_latency(curve, path.with_suffix(".png"))
        atomic_write_text(path.with_suffix(".md"), latency_markdown(curve))
        table = Table(title=f"classifier ms per prompt, batch {curve.batch_size}, {curve.threads} thread(s), load {curve.load_average}")
        for column in ("people", "plain ms", "plain /s", "hardened ms", "hardened /s", "ratio"):
            table.add_column(column, justify="right")
        for n, p, h, r in zip(curve.people, curve.plain_ms_per_prompt, curve.hardened_ms_per_prompt, curve.speedup):
            table.add_row(str(n), f"{p:.2f}", f"{1000 / p:.0f}", f"{h:.3f}", f"{1000 / h:.0f}", f"{r:.0f}x")
        out.print(table)
        out.print(f"{path}, .md and .png written")
