"""``eco-unlearn mcq ...``: the MMLU-subset unlearning experiment and the bare model's subject accuracies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .console import errors, out, progress, quiet_transformers

app = typer.Typer(help="Multiple-choice unlearning on MMLU subjects (and WMDP-format files).", no_args_is_help=True)

MODEL = typer.Option("gemma3-270m", "--model", "-m", help="Embedded default, local folder or hub id.")
DATA_DIR = typer.Option(None, "--data-dir", help="Folder with mmlu/{test,dev}.jsonl (or one holding mmlu/); default $ECO_UNLEARN_DATA, else the hub.")
FOCUS = typer.Option(None, "--focus-per-subject", min=1, help="Questions scored per forget or related subject (default: all).")
OTHER = typer.Option(None, "--other-per-subject", min=1, help="Questions scored per other subject (default: all).")
METHODS = typer.Option("letters,cloze", "--methods", help="letters (answer-letter logits), cloze (choice likelihood), or both.")
OUT = typer.Option(None, "--out", help="Results folder (default benchmarks/results/mcq).")


def _subjects(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


@app.command("run")
def run(
    forget_subjects: Optional[str] = typer.Option(None, "--forget-subjects", help="Comma-separated MMLU subjects to forget."),
    related_subjects: str = typer.Option("", "--related-subjects", help="Comma-separated subjects to keep that are closest to them."),
    setting: Optional[str] = typer.Option(
        None, "--setting", help="A named setting instead: economics, physics, law, above-chance."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the results (default: the setting, or 'custom')."),
    model: str = MODEL,
    data_dir: Optional[Path] = DATA_DIR,
    focus: Optional[int] = FOCUS,
    other: Optional[int] = OTHER,
    methods: str = METHODS,
    strength_items: int = typer.Option(16, "--strength-items", min=2, help="Forget training questions the strength search scores."),
    budget: int = typer.Option(8, "--budget", min=2, help="Most evaluations of the strength search."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    out_dir: Optional[Path] = OUT,
) -> None:
    """Score the bare model, fit a guard on unscored questions, score the guarded model; write JSON, PNG, table."""
    from ..bench.mcq import (
        SETTINGS, McqRunConfig, McqSetting, SampleSizes, load_questions, markdown_table, run_mcq, write_results,
    )
    from ..errors import DatasetError

    quiet_transformers()
    with errors():
        if (setting is None) == (forget_subjects is None):
            raise DatasetError("give either --setting or --forget-subjects (with --related-subjects)")
        chosen = SETTINGS.get(setting) if setting else McqSetting(name or "custom", _subjects(forget_subjects),
                                                                  _subjects(related_subjects))
        folder = out_dir or opt.results_path("mcq")
        config = McqRunConfig(chosen, model=model, data_dir=data_dir, output=folder,
                              sizes=SampleSizes(focus=focus, other=other), methods=_subjects(methods),
                              strength_items=strength_items, budget=budget, batch_size=batch_size)
        questions = load_questions(config)  # bad data or subjects: one error line, before the progress and the model
        with progress(f"MMLU {chosen.name}") as report_progress:
            report = run_mcq(config, progress=report_progress, questions=questions)
        paths = write_results(report, str(folder))
        # soft_wrap: a Markdown table and paths stay whole lines at any width (a pipe, a log file)
        out.print(markdown_table(report), highlight=False, soft_wrap=True)
        out.print(f"wrote {paths['json']}, {paths['png']} and {paths['table']}", highlight=False, soft_wrap=True)


@app.command("subjects")
def subjects(
    model: str = MODEL,
    data_dir: Optional[Path] = DATA_DIR,
    other: Optional[int] = OTHER,
    methods: str = typer.Option("letters", "--methods"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    out_dir: Optional[Path] = OUT,
) -> None:
    """The bare model's accuracy on every subject (what picks subjects it knows, before any fit)."""
    from ..bench.mcq import McqRunConfig, McqSetting, SampleSizes, by_subject, subject_table, subject_accuracies
    from ..data.mmlu import load_mmlu

    quiet_transformers()
    with errors():
        folder = out_dir or opt.results_path("mcq")
        config = McqRunConfig(McqSetting("subjects", ("-",), ()), model=model, data_dir=data_dir, output=folder,
                              sizes=SampleSizes(other=other), methods=_subjects(methods), batch_size=batch_size)
        groups = by_subject(load_mmlu("test", data_dir=data_dir), config.sizes.seed)  # bad data: one line, before the model
        with progress("subject accuracies") as report_progress:
            found = subject_accuracies(config, progress=report_progress, groups=groups)
        table = subject_table(found["questions"], found["scores"], folder / "subjects.md")
        out.print(table, highlight=False, soft_wrap=True)


@app.command("lm-eval")
def lm_eval_check(
    setting: str = typer.Option(..., "--setting", help="A named setting already run by `mcq run`."),
    model: str = MODEL,
    data_dir: Optional[Path] = DATA_DIR,
    focus: Optional[int] = FOCUS,
    other: Optional[int] = OTHER,
    timing_questions: int = typer.Option(16, "--timing-questions", min=1, help="Unflagged questions timed under hf and eco."),
    repeats: int = typer.Option(3, "--timing-repeats", min=0, help="hf/eco pairs timed side by side (0: keep the earlier timing)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    out_dir: Optional[Path] = OUT,
) -> None:
    """The same experiment through lm-evaluation-harness (`hf` and `eco`), and eco's overhead when nothing is flagged."""
    from ..bench.mcq import SETTINGS, McqRunConfig, SampleSizes
    from ..bench.mcq.lmeval_run import run_lm_eval_check

    quiet_transformers()
    with errors():
        config = McqRunConfig(SETTINGS.get(setting), model=model, data_dir=data_dir, output=out_dir or opt.results_path("mcq"),
                              sizes=SampleSizes(focus=focus, other=other), methods=("letters",), batch_size=batch_size)
        result = run_lm_eval_check(config, timing_questions=timing_questions, repeats=repeats)
        for row in result["rows"]:
            out.print(row, highlight=False, soft_wrap=True)
        timing = result["timing_nothing_flagged"]
        out.print(f"agreement {result['agreement']}; eco/hf wall time "
                  + (f"{timing['ratio']:.3f} (median of {timing.get('repeats', len(timing['seconds']['hf']))} pairs)"
                     if timing else "not measured"), highlight=False, soft_wrap=True)
