"""The built-in demo target: make a model forget the Harry Potter universe.

Written for this project: ``data/forget.jsonl`` (questions with reference answers and choices),
``data/retain.jsonl`` (hard negatives: other fantasy worlds, real wizards, owls, trains, people named
Harry) and the library's pool of everyday prompts. ``fit_demo_guard`` fits a guard on them; the
``eco-unlearn demo`` command shows what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..fitting import FitConfig, FitResult, SearchConfig, fit_guard
from ..data.items import PromptItem, read_items
from ..models import cache_dir

__all__ = ["DEMO_ENTITIES", "DemoData", "demo_data", "demo_fit_config", "demo_guard_path", "fit_demo_guard"]

DEMO_ENTITIES = (
    "Harry Potter", "Hogwarts", "Hermione", "Granger", "Ron Weasley", "Weasley", "Dumbledore", "Voldemort",
    "Gryffindor", "Slytherin", "Hufflepuff", "Ravenclaw", "Quidditch", "Hagrid", "Snape", "Draco Malfoy",
    "Malfoy", "Hedwig", "Horcrux", "Horcruxes", "Muggle", "Muggles", "Diagon Alley", "Azkaban", "Dobby",
    "J.K. Rowling", "Rowling", "Death Eaters", "Hogwarts Express", "Albus", "Severus", "Sirius Black", "Bellatrix",
    "Umbridge", "Neville Longbottom", "Lumos", "Expelliarmus",
    "Chamber of Secrets", "Prisoner of Azkaban", "Goblet of Fire", "Order of the Phoenix", "Half-Blood Prince",
    "Deathly Hallows",
)


@dataclass
class DemoData:
    forget: list[PromptItem]
    retain: list[PromptItem]


def demo_data() -> DemoData:
    """The demo's forget and retain items (the general negatives are the library's built-in pool)."""
    folder = resources.files("eco_unlearn.demo") / "data"
    with resources.as_file(folder) as path:
        return DemoData(
            forget=read_items(Path(path) / "forget.jsonl", name="demo forget set"),
            retain=read_items(Path(path) / "retain.jsonl", name="demo retain set"),
        )


def demo_guard_path(model_name: str = "smollm2") -> Path:
    """Where ``eco-unlearn demo`` keeps the guard it fitted for ``model_name``."""
    return cache_dir() / "guards" / f"demo-{Path(model_name).name}"


def demo_fit_config(seed: int = 0, budget: int = SearchConfig.budget) -> FitConfig:
    """The demo's settings: its target's name, ``answer_recall`` bisected (the least noise after which the
    model no longer gives the answers it knew) in at most ``budget`` evaluations of the guarded model (fewer:
    a quicker fit whose strength may be above the least that forgets)."""
    search = SearchConfig(method="bisection", budget=budget, objective="answer_recall")
    return FitConfig(name="harry-potter", seed=seed, search=search)


def fit_demo_guard(
    model: Any, tokenizer: Any, *, seed: int = 0, budget: int = SearchConfig.budget,
    progress: Callable[[str, int, int], None] | None = None, **options: Any
) -> FitResult:
    """Fit the demo guard: MiniLM + the names of the books, Gaussian noise on those names' tokens,
    strength bisected (at most ``budget`` evaluations) until the model no longer gives the answers it knew.
    ``options`` go to ``fit_guard``."""
    data = demo_data()
    options.setdefault("entities", DEMO_ENTITIES)
    config = demo_fit_config(seed, budget)
    return fit_guard(model, tokenizer, data.forget, data.retain, config, progress=progress, **options)
