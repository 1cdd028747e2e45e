"""``eco-unlearn fit`` and ``eco-unlearn demo``: fit a guard offline and save it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import options as opt
from .console import err, errors, load, out, progress
from .render import before_after_table, fit_report


def fit(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the guard to."),
    forget: Optional[Path] = typer.Option(None, "--forget", help="Prompts to forget: JSON Lines or plain text, one a line."),
    about: Optional[list[str]] = typer.Option(None, "--about", help="Forget a person: derive the forget prompts from this name (instead of --forget); repeat it for several people in one guard."),
    alias: Optional[list[str]] = typer.Option(None, "--alias", help="--about: another name or spelling of the person (repeatable; one --about only)."),
    passage: Optional[Path] = typer.Option(None, "--passage", help="--about: a text about the person (facts become cloze prompts; one --about only)."),
    people: Optional[Path] = typer.Option(None, "--people", help="Forget several people in one guard: JSON Lines, one {\"name\", \"aliases\", \"passage\" or \"passage_file\"} a line."),
    reverse: bool = typer.Option(False, "--reverse", help="--about/--people: a second target for prompts that ask for the person without naming them (questions derived from the passages), every token corrupted."),
    mmlu_dir: Optional[Path] = typer.Option(None, "--mmlu-negatives", help="--about/--people: a folder with MMLU (or one holding mmlu/); its dev questions become negatives."),
    entity_negatives: str = typer.Option("error", "--entity-negatives", help="Negatives naming an entity: error (name them and stop), drop, forget (in scope) or accept (the FPR they cause)."),
    retain: Optional[Path] = typer.Option(None, "--retain", help="Prompts to keep answering (hard negatives)."),
    general: str = typer.Option("builtin", "--general", help="Everyday prompts as negatives: a file, 'builtin' or 'none'."),
    model: str = opt.MODEL,
    name: str = typer.Option("forget", "--name", help="The target's name."),
    entities: Optional[str] = typer.Option(None, "--entities", help="Names of the forget scope, comma-separated, or @FILE with one a line."),
    objective: Optional[str] = typer.Option(None, "--objective", help="choice_accuracy, answer_recall or match_reference (default: from the data)."),
    target: Optional[float] = typer.Option(None, "--target", help="The objective's target (default: the objective's own)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="match_reference: items the model never saw, scored unguarded as the reference."),
    statistic: str = typer.Option("truth_ratio", "--statistic", help="match_reference: answer_prob or truth_ratio."),
    corruption: str = typer.Option("gaussian_first_n", "--corruption", help="A registered corruption."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Tokens to corrupt: all_but_last, all, entities or people (names and lone surnames); default: entities when there are entities, else all_but_last."),
    token_fallback: str = typer.Option("all_but_last", "--token-fallback", help="entities/people: the tokens of a flagged prompt that names no one: all_but_last, all or none (left uncorrupted)."),
    strength: Optional[float] = typer.Option(None, "--strength", help="A fixed strength instead of a search."),
    search: str = typer.Option("auto", "--search", help="auto, bisection, zeroth_order, scan, bracket or grid."),
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations the search may make."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Prompts per forward pass of the strength search (default 16; large vocabularies such as Gemma's gain from 64)."),
    search_dtype: str = typer.Option("float32", "--search-dtype", help="Float type of the strength search's forward passes: float32, bfloat16 (autocast) or auto (bfloat16 where the CPU has it natively: two to three times faster there)."),
    alpha: float = typer.Option(0.01, "--alpha", help="False-positive bound of the threshold."),
    classifier_mode: opt.ClassifierMode = typer.Option("linear", "--classifier", help="linear (frozen encoder) or finetune."),
    backbone: str = typer.Option("minilm", "--backbone", help="Encoder: 'minilm', a local folder or a hub id."),
    chat: Optional[bool] = opt.CHAT,
    seed: int = opt.SEED,
    report_path: Optional[Path] = typer.Option(None, "--report", help="Also write the report as JSON here."),
    dtype: str = opt.DTYPE,
    device: str = opt.DEVICE,
) -> None:
    """Fit a guard: train the prompt classifier, calibrate its threshold, search the corruption strength."""
    from ..data import read_items
    from ..fitting import (
        CalibrationConfig, ClassifierConfig, CorruptionConfig, FitConfig, SearchConfig, TokenCandidate, TokensConfig,
        fit_guard, make_objective,
    )

    with errors():
        config = FitConfig(  # bad settings fail before any file is read
            name=name, seed=seed, chat=chat,
            classifier=ClassifierConfig(mode=opt.ClassifierMode(classifier_mode).value, backbone=backbone),
            calibration=CalibrationConfig(alpha=alpha, entity_negatives=entity_negatives),
            search=SearchConfig(method=search, budget=budget, strength=strength, objective=objective, target=target, dtype=search_dtype,
                                objective_options={"batch_size": batch_size} if batch_size is not None else {}),
            corruption=CorruptionConfig(name=corruption),
            tokens=TokensConfig((TokenCandidate(tokens, fallback=None if token_fallback == "none" else token_fallback),))
            if tokens is not None else TokensConfig(),
        )
        names = opt.entities(entities)
        if sum(x is not None for x in (forget, about or None, people)) != 1:
            raise typer.BadParameter(
                "give one of --forget FILE (prompts to forget), --about NAME (a person) or --people FILE (several)"
            )
        if about or people is not None:
            specs = _people(about or [], alias or [], passage, people)
            _fit_about(specs, mmlu_dir, config, model, dtype, device, out_dir, report_path, reverse)
            return
        forget_items = read_items(forget, name="forget set")  # bad files fail before the model loads
        retain_items = read_items(retain, name="retain set") if retain is not None else []
        general_items = general if general in ("builtin", "none") else read_items(general, name="general set")
        surrogate = None
        if objective == "match_reference":  # its reference items are data: the objective is built here
            if reference is None:
                raise typer.BadParameter("match_reference needs --reference FILE (items the model never saw)")
            surrogate = make_objective(
                "match_reference", forget_items, chat=chat, target=target, statistic=statistic,
                reference_items=read_items(reference, name="reference set"),
            )
        lm, tokenizer = load(model, dtype, device)
        with progress("fitting") as report_progress:
            result = fit_guard(
                lm, tokenizer, forget_items, retain_items, config, general=None if general == "none" else general_items,
                entities=names, objective=surrogate, progress=report_progress,
            )
        _save(result, out_dir, report_path)


def _people(about: list[str], aliases: list[str], passage: Optional[Path], people: Optional[Path]) -> list:
    """The people of --about (with --alias and --passage for a single one) or of --people FILE."""
    from ..errors import ItemsError
    from ..fitting.about import AboutSpec, as_people, read_people

    if people is not None:
        if aliases or passage is not None:
            raise typer.BadParameter("--alias and --passage go with one --about; in a --people file, each line has its own")
        return read_people(people)
    if len(about) > 1 and (aliases or passage is not None):
        raise typer.BadParameter("--alias and --passage go with one --about; for several people with their own, use --people FILE")
    try:
        text = passage.read_text(encoding="utf-8") if passage is not None else ""
    except OSError as exc:
        raise ItemsError(f"cannot read --passage {passage}: {exc.strerror or exc}") from None
    specs = [AboutSpec(about[0], tuple(aliases), text)] if len(about) == 1 else [AboutSpec(n) for n in about]
    as_people(specs)  # a name given twice fails before the model loads
    return specs


def _fit_about(specs: list, mmlu_dir: Optional[Path], config, model: str, dtype: str, device: str, out_dir: Path,
               report_path: Optional[Path], reverse: bool) -> None:
    from ..data.mmlu import load_mmlu
    from ..fitting.about import fit_about

    mmlu = [q.question for q in load_mmlu("dev", data_dir=mmlu_dir)] if mmlu_dir is not None else []
    lm, tokenizer = load(model, dtype, device)
    who = specs[0].name if len(specs) == 1 else f"{len(specs)} people"
    with progress(f"fitting a guard about {who}") as report_progress:
        result = fit_about(lm, tokenizer, specs, config, mmlu=mmlu, reverse=reverse, progress=report_progress)
    _save(result, out_dir, report_path)
    if reverse:
        info = result.guard.metadata["reverse_target"]
        rates = info.get("held_out")
        out.print(f"reverse target: {info['reverse_questions']} questions from the passages; "
                  + (f"held-out FNR {rates['fnr']:.1%} of {rates['positives']}, FPR {rates['fpr']:.1%} of {rates['negatives']}"
                     if rates else info["skipped"]))


def demo(
    model: str = opt.MODEL,
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to save the guard (default: the cache, for `generate --guard demo`)."),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", "-n", min=1),
    budget: int = typer.Option(30, "--budget", min=2, help="Most guarded-model evaluations of the strength search (fewer: quicker, the strength coarser)."),
    seed: int = opt.SEED,
    report_path: Optional[Path] = typer.Option(None, "--report", help="Also write the fit report as JSON here."),
) -> None:
    """Fit a guard that makes the model forget Harry Potter, then show answers before and after."""
    from ..demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS, demo_guard_path, fit_demo_guard
    from ..io import atomic_write_json
    from ..runtime import GuardedModel

    with errors():
        lm, tokenizer = load(model, "float32", "cpu")
        with progress("fitting the demo guard") as report_progress:
            result = fit_demo_guard(lm, tokenizer, seed=seed, budget=budget, progress=report_progress)
        path = out_dir or demo_guard_path(model)
        result.guard.save(path)
        if report_path is not None:
            atomic_write_json(report_path, result.report.to_dict())
        fit_report(result.report)
        prompts = list(DEMO_FORGET_PROMPTS + DEMO_CLEAN_PROMPTS)
        with err.status(f"Answering {len(prompts)} prompts with and without the guard"):
            guarded = GuardedModel(lm, tokenizer, result.guard)
            after, decisions = guarded.generate(prompts, chat=True, max_new_tokens=max_new_tokens, return_decisions=True)
            before = GuardedModel(lm, tokenizer).generate(prompts, chat=True, max_new_tokens=max_new_tokens)
        before_after_table(prompts, before, after, decisions)
        out.print(f"guard written to {path}; try: eco-unlearn generate --guard {'demo' if out_dir is None else path} \"your prompt\"")


def _save(result, out_dir: Path, report_path: Optional[Path]) -> None:
    """Write the guard (and the report), print the report and the verdict."""
    from ..io import atomic_write_json

    result.guard.save(out_dir)
    if report_path is not None:
        atomic_write_json(report_path, result.report.to_dict())
    fit_report(result.report)
    verdict = "[green]met[/]" if result.report.met else "[red]NOT met (met_target: false; see the warnings)[/]"
    out.print(f"target {verdict}; guard written to {out_dir}" + (f", report to {report_path}" if report_path else ""))
