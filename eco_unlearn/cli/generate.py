"""``eco-unlearn generate``: answer prompts with a guarded model."""

from __future__ import annotations

import json
from typing import Optional

import typer

from . import options as opt
from .console import err, errors, load, load_guard, out
from .render import answers_table


def generate(
    prompts: Optional[list[str]] = typer.Argument(None, help="Prompts; the demo prompts when omitted."),
    model: str = opt.MODEL,
    guard: Optional[str] = typer.Option(None, "--guard", "-g", help="Guard folder, or 'demo' for the guard `eco-unlearn demo` fitted."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", min=1),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass, in (0, 1]."),
    seed: Optional[int] = typer.Option(None, help="Seed for sampling (temperature > 0)."),
    chat: Optional[bool] = opt.CHAT,
    compare: bool = typer.Option(False, "--compare", help="Also show the unguarded answer side by side."),
    truncation: opt.Truncation = opt.TRUNCATION,
    force: bool = opt.FORCE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per prompt instead of a table."),
    dtype: str = opt.DTYPE,
    device: str = opt.DEVICE,
) -> None:
    """Generate with a guarded model; flagged prompts are answered from corrupted embeddings."""
    from ..demo import DEMO_CLEAN_PROMPTS, DEMO_FORGET_PROMPTS
    from ..runtime import GuardedModel

    with errors():
        prompts = list(prompts or (DEMO_FORGET_PROMPTS + DEMO_CLEAN_PROMPTS))
        lm, tokenizer = load(model, dtype, device)
        truncation = opt.Truncation(truncation).value
        guarded = GuardedModel(lm, tokenizer, load_guard(guard, model), force=force, truncation=truncation)
        use_chat = bool(tokenizer.chat_template) if chat is None else chat
        kwargs = dict(chat=use_chat, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        with err.status(f"Generating {len(prompts)} answer(s)"):
            texts, decisions = guarded.generate(prompts, return_decisions=True, **kwargs)
            bare = GuardedModel(lm, tokenizer, truncation=truncation).generate(prompts, **kwargs) if compare else None
        if as_json:
            for i, (prompt, text, decision) in enumerate(zip(prompts, texts, decisions)):
                record = {"prompt": prompt, "text": text, "decision": decision.to_dict()}
                if bare is not None:
                    record["unguarded"] = bare[i]
                out.print_json(json.dumps(record))
            return
        title = f"{model}" + (f" guarded by {guard}" if guard else " (no guard)")
        answers_table(title, prompts, texts, decisions, bare)
