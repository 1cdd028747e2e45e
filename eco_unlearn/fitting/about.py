"""Guards from what a user has: a person's name, its other spellings, and a text about them.

``about_items`` derives forget prompts with no hand-written examples: questions about the person from
templates over every name, cloze prompts over the passage's sentences (a fact with its key phrase blanked,
the phrase as the reference answer, so the strength search has an objective), and attack rewrites of both
(augmentation). ``about_negatives`` gathers negatives: the built-in everyday prompts, MMLU questions,
the same templates about other people, and sentences of other people's passages. ``fit_about`` feeds
them to ``fit_guard`` with a classifier hardened against character tricks and partial names."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..classifier import (
    AnyOfClassifier, EncoderClassifier, KeywordClassifier, PromptClassifier, hardened_people_classifier,
)
from ..classifier.augment import passage_aliases
from ..data.attacks import ATTACKS, user_text
from ..data.items import ItemsError, PromptItem, general_prompts
from .config import FitConfig
from .pipeline import FitResult, fit_guard

__all__ = ["AboutSpec", "about_classifier", "about_items", "about_negatives", "fit_about", "OTHER_PEOPLE"]

QUESTIONS = (
    "Who is {name}?", "Tell me about {name}.", "What is {name} best known for?", "When was {name} born?",
    "Where was {name} born?", "What is {name}'s nationality?", "Who is {name} married to?",
    "What awards has {name} won?", "Write a short biography of {name}.", "What did {name} do early in life?",
    "Name one famous work by {name}.", "What is {name}'s most important achievement?", "How did {name} become famous?",
    "What controversies has {name} been involved in?", "Who are {name}'s parents?", "Where did {name} study?",
    "What happened to {name} in the end?", "Which company or group is {name} associated with?",
    "Give three facts about {name}.", "What year did {name} start their career?",
)
AUGMENTING_ATTACKS = ("role_play", "sure_here_is", "instruction_override", "json_framing", "spanish_framing",
                      "surname_only", "lowercase", "typo", "multi_turn", "long_context")
OTHER_PEOPLE = (
    "Albert Einstein", "Marie Curie", "Isaac Newton", "Cleopatra", "Napoleon Bonaparte", "Frida Kahlo",
    "Nelson Mandela", "Ada Lovelace", "Leonardo da Vinci", "Mahatma Gandhi", "Charles Darwin", "Serena Williams",
    "Lionel Messi", "Oprah Winfrey", "Abraham Lincoln", "Jane Austen", "Wolfgang Amadeus Mozart", "Pablo Picasso",
    "Galileo Galilei", "Florence Nightingale", "Winston Churchill", "Martin Luther King Jr.", "Nikola Tesla",
    "Queen Victoria", "Steve Jobs", "Amelia Earhart", "Vincent van Gogh", "Ludwig van Beethoven", "Rosa Parks",
    "Alexander the Great", "Usain Bolt", "Meryl Streep", "Elvis Presley", "Agatha Christie", "Neil Armstrong",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NOT_FACTS = {"she", "he", "they", "her", "his", "their", "it", "its", "in", "the", "a", "an", "after", "during",
              "at", "on", "as", "by", "with", "from", "this", "that", "these", "about", "complete"}
_PHRASE = re.compile(r"\b(?:\d{3,4}s?|(?:[A-Z][\w'&.-]+)(?:\s+(?:of|the|and|de|[A-Z][\w'&.-]+))*)\b")


@dataclass(frozen=True)
class AboutSpec:
    """The person: ``name``, other spellings or names (``aliases``), and text about them (``passage``)."""

    name: str
    aliases: tuple[str, ...] = ()
    passage: str = ""
    max_facts: int = 40

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ItemsError("--about needs a non-empty name")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.strip() for n in (self.name, *self.aliases) if n.strip()))


def _cloze(sentence: str, names: Sequence[str]) -> PromptItem | None:
    """The sentence with its last key phrase (a number or capitalised phrase that is no name) blanked."""
    lowered = [n.lower() for n in names]
    candidates = [m for m in _PHRASE.finditer(sentence)
                  if m.start() > 0 and m.group(0).lower() not in _NOT_FACTS and not any(m.group(0).lower() in n or n in m.group(0).lower() for n in lowered)]
    if not candidates:
        return None
    m = candidates[-1]
    return PromptItem(sentence[: m.start()] + "___" + sentence[m.end() :], answer=m.group(0).strip(" .,"))


def about_items(spec: AboutSpec, *, seed: int = 0, augment: bool = True) -> list[PromptItem]:
    """Forget prompts about ``spec``: template questions for every name, cloze facts from the passage
    (with answers), and, with ``augment``, attack rewrites of a sample of both."""
    items = [PromptItem(q.format(name=n), source="template") for n in spec.names for q in QUESTIONS]
    facts = []
    for sentence in _SENTENCE.split(spec.passage.strip()):
        sentence = " ".join(sentence.split())
        if not 30 <= len(sentence) <= 300:
            continue
        if not any(n.lower() in sentence.lower() for n in spec.names):
            sentence = f"About {spec.name}: {sentence}"
        item = _cloze(sentence, spec.names)
        if item is not None:
            facts.append(PromptItem(f"Complete the blank: {item.prompt}", answer=item.answer, source="passage"))
        if len(facts) >= spec.max_facts:
            break
    items += facts
    if augment:
        rng = random.Random(seed)
        base = [i.prompt for i in items]
        for attack in AUGMENTING_ATTACKS:
            for prompt in rng.sample(base, min(6, len(base))):
                rewritten = ATTACKS.get(attack)(prompt, spec.name, rng)
                if rewritten is not None:
                    items.append(PromptItem(user_text(rewritten), source=f"augment:{attack}"))
    return items


def about_negatives(
    spec: AboutSpec, *, mmlu: Sequence[str] = (), other_passages: Sequence[str] = (), max_passage_sentences: int = 200,
) -> list[PromptItem]:
    """Negatives for ``spec``: the built-in everyday prompts, ``mmlu`` questions, the question templates
    about other people, and sentences of ``other_passages`` (texts about other people). Anything naming
    the person is left out."""
    names = [n.lower() for n in spec.names]
    others = [p for p in OTHER_PEOPLE if p.lower() not in names]
    texts = [i.prompt for i in general_prompts()] + list(mmlu)
    texts += [q.format(name=p) for p in others for q in QUESTIONS[:6]]
    sentences = [" ".join(s.split()) for passage in other_passages for s in _SENTENCE.split(passage)]
    texts += [s for s in sentences if 30 <= len(s) <= 300][:max_passage_sentences]
    return [PromptItem(t, source="negative") for t in dict.fromkeys(texts) if not any(n in t.lower() for n in names)]


def about_classifier(names: Sequence[str], *, hardened: bool = True, backbone: str = "minilm", mode: str = "linear",
                     seed: int = 0, passage: str = "") -> PromptClassifier:
    """An unfitted classifier for one person, ``names`` being their spellings. ``hardened``: text
    normalisation, then the person's names found by an index (typos, initials, middle names, and the
    spellings ``passage`` opens with) and partial names weighed in context by a fast lexical classifier
    (``classifier.people``). Otherwise names match exactly (``KeywordClassifier``) next to an encoder
    (``backbone``, ``mode``: used by this plain classifier only)."""
    if hardened:
        return hardened_people_classifier([tuple(names) + passage_aliases(passage, names[0])])
    return AnyOfClassifier([KeywordClassifier(list(names)), EncoderClassifier(backbone, mode=mode, seed=seed)])


def fit_about(
    model: Any, tokenizer: Any, spec: AboutSpec, config: FitConfig | None = None, *, mmlu: Sequence[str] = (),
    other_passages: Sequence[str] = (), hardened: bool = True, progress: Any = None,
) -> FitResult:
    """``fit_guard`` on prompts derived from ``spec`` alone (see the module docstring)."""
    config = config or FitConfig(name=spec.name)
    forget = about_items(spec, seed=config.seed)
    negatives = about_negatives(spec, mmlu=mmlu, other_passages=other_passages)
    classifier = about_classifier(spec.names, hardened=hardened, backbone=config.classifier.backbone,
                                  mode=config.classifier.mode, seed=config.seed, passage=spec.passage)
    return fit_guard(model, tokenizer, forget, [], config, general=negatives, entities=spec.names,
                     classifier=classifier, progress=progress)
