"""Guards from what a user has: a person's name, its other spellings, and a text about them; or several
people in one guard.

``about_items`` derives forget prompts with no hand-written examples: questions about the person from
templates over every name, cloze prompts over the passage's sentences (a fact with its key phrase blanked,
the phrase as the reference answer, so the strength search has an objective), and attack rewrites of both
(augmentation). ``about_negatives`` gathers negatives: the built-in everyday prompts, MMLU questions,
the same templates about other people, and sentences of other people's passages. ``fit_about`` feeds
them to ``fit_guard`` with a classifier hardened against character tricks; given several people it fits
one target for all of them (one classifier, every name an entity, one strength). ``read_people`` reads
people from a JSON Lines file, ``rwku_people`` makes them from RWKU targets' names and texts (never their
probes)."""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

from ..classifier import (
    AnyOfClassifier, EncoderClassifier, KeywordClassifier, PromptClassifier, hardened_people_classifier,
)
from ..classifier.augment import nameless_prompts, passage_aliases
from ..data.attacks import ATTACKS, user_text
from ..data.items import ItemsError, PromptItem, general_prompts
from ..runtime.corruption import CorruptionSpec
from ..runtime.guard import Target
from ..runtime.tokens import TokenSelection
from .classifier_fit import fit_classifier
from .config import FitConfig
from .pipeline import FitResult, fit_guard

if TYPE_CHECKING:
    from ..data.rwku import RwkuTarget

__all__ = [
    "AboutSpec", "People", "about_classifier", "about_items", "about_negatives", "as_people", "fit_about",
    "nameless_items",
    "people_items", "read_people", "related_entities", "reverse_questions", "rwku_people", "OTHER_PEOPLE",
    "RELATED_QUESTIONS",
]

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


People = Union[AboutSpec, Sequence[AboutSpec]]
"""One person or several: what ``fit_about`` and ``about_negatives`` take."""


def as_people(people: People) -> tuple[AboutSpec, ...]:
    """``people`` as a tuple of specs; none, or one name given twice, is refused."""
    specs = (people,) if isinstance(people, AboutSpec) else tuple(people)
    if not specs:
        raise ItemsError("--about needs at least one person")
    if not all(isinstance(s, AboutSpec) for s in specs):
        raise ItemsError(f"people must be AboutSpec objects, not {[type(s).__name__ for s in specs]}")
    owners: dict[str, int] = {}
    for i, spec in enumerate(specs):
        for name in spec.names:
            j = owners.setdefault(name.lower(), i)
            if j != i:
                raise ItemsError(f"the name {name!r} is given for {specs[j].name!r} and again for {spec.name!r}; "
                                 "give each person once, with all their names")
    return specs


def people_names(people: People) -> tuple[str, ...]:
    """Every name and alias of ``people``, in order, once each."""
    return tuple(dict.fromkeys(n for spec in as_people(people) for n in spec.names))


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
            facts.append(PromptItem(f"Complete the blank: {item.prompt}\nAnswer:", answer=item.answer, source="passage"))
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


def people_items(people: People, *, seed: int = 0, augment: bool = True) -> list[PromptItem]:
    """``about_items`` of every person (the i-th with seed ``seed + i``), one list."""
    return [item for i, spec in enumerate(as_people(people)) for item in about_items(spec, seed=seed + i, augment=augment)]


def nameless_items(people: People, *, seed: int = 0) -> list[PromptItem]:
    """Questions for each of ``people`` from their passage's sentences with every name removed ("Who is the
    person described here? ... this person ..."; ``classifier.augment.nameless_prompts``): forget prompts that
    teach the hardened classifier the person's topics without the name. No answer, so no strength objective."""
    return [PromptItem(p, source="nameless") for spec in as_people(people)
            for p in nameless_prompts(spec.passage, spec.names, seed=seed)]


RELATED_QUESTIONS = (
    "Tell me about {name}.", "What is {name} known for?", "Give three facts about {name}.",
    "Write a short paragraph about {name}.", "What is the history of {name}?",
    "Complete the blank: {name} is best known for ___.\nAnswer:",
)
"""Questions about the people, places and works around a person: hard negatives (``related_entities``)."""


_TRAILING = re.compile(r"(?:'s|\s+(?:of|the|and|de))+$")
_LEADING = re.compile(r"^(?:(?:of|the|and|de)\s+)+")


def related_entities(spec: AboutSpec, *, limit: int = 25, min_mentions: int = 2) -> list[str]:
    """The other people, places, groups and works ``spec``'s passage mentions most: capitalised phrases
    (without a sentence's first word) mentioned at least ``min_mentions`` times, none of them a name of the
    person or part of one. They are what a guard must keep answering about (RWKU's neighbours are such)."""
    names = [n.lower() for n in spec.names]
    counts: dict[str, int] = {}
    for sentence in _SENTENCE.split(spec.passage):
        for m in _PHRASE.finditer(sentence):
            phrase = _TRAILING.sub("", m.group(0).strip(" .,"))
            if m.start() == 0:  # a sentence's first word is capitalised anyway: drop it ("In Omaha" is Omaha)
                phrase = _LEADING.sub("", phrase.partition(" ")[2])
            low = phrase.lower()
            if (low in _NOT_FACTS or len(phrase) < 3 or phrase[0].isdigit()
                    or any(low in n or n in low for n in names)):
                continue
            counts[phrase] = counts.get(phrase, 0) + 1
    ranked = sorted((p for p, c in counts.items() if c >= min_mentions), key=lambda p: (-counts[p], p))
    return ranked[:limit]


def about_negatives(
    spec: People, *, mmlu: Sequence[str] = (), other_passages: Sequence[str] = (), max_passage_sentences: int = 200,
    related: bool = False,
) -> list[PromptItem]:
    """Negatives for ``spec`` (one person or several): the built-in everyday prompts, ``mmlu`` questions,
    the question templates about other people, sentences of ``other_passages`` (texts about other people)
    and, with ``related``, questions about the people, places and works each passage mentions most
    (``related_entities``: hard negatives next to the person). Anything naming one of the people is left out."""
    names = [n.lower() for n in people_names(spec)]
    others = [p for p in OTHER_PEOPLE if p.lower() not in names]
    texts = [i.prompt for i in general_prompts()] + list(mmlu)
    texts += [q.format(name=p) for p in others for q in QUESTIONS[:6]]
    sentences = [" ".join(s.split()) for passage in other_passages for s in _SENTENCE.split(passage)]
    texts += [s for s in sentences if 30 <= len(s) <= 300][:max_passage_sentences]
    if related:
        texts += [q.format(name=e) for person in as_people(spec) for e in related_entities(person) for q in RELATED_QUESTIONS]
    return [PromptItem(t, source="negative") for t in dict.fromkeys(texts) if not any(n in t.lower() for n in names)]


def about_classifier(people: "People | Sequence[str]", *, hardened: bool = True, backbone: str = "minilm",
                     mode: str = "linear", seed: int = 0, passage: str = "") -> PromptClassifier:
    """An unfitted classifier for ``people``: ``AboutSpec`` s, or one person's spellings (with ``passage``).
    ``hardened``: text normalisation, then each person's names found by an index (typos, initials, middle
    names, and the spellings their passage opens with) and partial names weighed in context by a fast lexical
    classifier (``classifier.people``). Otherwise names match exactly (``KeywordClassifier``) next to an
    encoder (``backbone``, ``mode``: used by this plain classifier only)."""
    if isinstance(people, AboutSpec) or (not isinstance(people, str) and people and isinstance(people[0], AboutSpec)):
        specs = as_people(people)  # type: ignore[arg-type]
        groups = [tuple(s.names) + passage_aliases(s.passage, s.names[0]) for s in specs]
        names = people_names(specs)
    else:
        names = tuple(people)  # type: ignore[arg-type]
        groups = [names + passage_aliases(passage, names[0])]
    if hardened:
        return hardened_people_classifier(groups)
    return AnyOfClassifier([KeywordClassifier(list(names)), EncoderClassifier(backbone, mode=mode, seed=seed)])


_REVERSE_VERB = re.compile(r"(?:is|was|has|had|became|founded|co-founded|wrote|served|won|began|started|married|led|"
                           r"created|hosted|starred|played|taught|died|conquered|pledged|appeared|released)\b")


def reverse_questions(spec: AboutSpec) -> list[PromptItem]:
    """Questions whose answer is the person, from the passage: a sentence that begins with a name, alias,
    lone surname or "He"/"She" and a verb ("Buffett founded X.") becomes "Who founded X?" (RWKU's reverse
    queries are such)."""
    starts = sorted({*spec.names, *(n.split()[-1] for n in spec.names if len(n.split()) > 1), "He", "She"},
                    key=len, reverse=True)
    questions = []
    for sentence in _SENTENCE.split(spec.passage):
        sentence = " ".join(sentence.split())
        for name in starts:
            rest = sentence[len(name) + 1 :].rstrip(".") if sentence.startswith(name + " ") else ""
            if 20 <= len(rest) <= 250 and _REVERSE_VERB.match(rest):
                questions.append(PromptItem(f"Who {rest}?", answer=spec.name, source="reverse"))
                break
    return questions


def _reverse_target(specs: Sequence[AboutSpec], result: FitResult, config: FitConfig, mmlu: Sequence[str],
                    other_passages: Sequence[str], progress: Any) -> tuple[Target | None, dict[str, Any]]:
    """A second target that corrupts every token of prompts asking *for* one of the people without naming
    them: an encoder trained on ``reverse_questions`` against the negatives and questions about the
    entities around them, calibrated as the first target was; None when the passages give too few."""
    questions = [q for spec in specs for q in reverse_questions(spec)]
    if len(questions) < 8:
        return None, {"reverse_questions": len(questions), "skipped": "fewer than 8 reverse questions in the passages"}
    negatives = about_negatives(specs, mmlu=mmlu, other_passages=other_passages, related=True)
    encoder = EncoderClassifier(config.classifier.backbone, mode=config.classifier.mode, seed=config.seed)
    fitted = fit_classifier(questions, [], config, general=negatives, classifier=encoder, progress=progress)
    main = result.guard.targets[0]
    spec = CorruptionSpec(main.corruption.name, main.corruption.strength, main.corruption.params)
    target = Target(f"{main.name}-reverse", fitted.classifier, spec, fitted.threshold, TokenSelection("all_but_last"),
                    fitted.calibration.to_dict())
    return target, {"reverse_questions": len(questions), "held_out": fitted.held_out.to_dict()}


def fit_about(
    model: Any, tokenizer: Any, spec: People, config: FitConfig | None = None, *, mmlu: Sequence[str] = (),
    other_passages: Sequence[str] = (), hardened: bool = True, related: bool = False, reverse: bool = False,
    progress: Any = None,
) -> FitResult:
    """``fit_guard`` on prompts derived from ``spec`` alone (see the module docstring): one person, or
    several in one target (one classifier over every name, every name an entity, one strength searched
    on all their cloze facts). ``hardened``: the people classifier, with ``nameless_items`` among the forget
    prompts (as the classifier benchmark, ``bench.rwku.classifier``, fits it); else exact names next to an
    encoder. ``related``: questions about the people, places and works the passages mention
    most are hard negatives (``about_negatives``). ``reverse``: add a second target for prompts that ask for
    one of the people without naming them (``reverse_questions``; every token corrupted, at the first
    target's strength; its held-out rates in ``guard.metadata["reverse_target"]``). The target is named after the person, or ``people`` for several, unless
    ``config`` names it."""
    specs = as_people(spec)
    default_name = specs[0].name if len(specs) == 1 else "people"
    config = config or FitConfig(name=default_name)
    if config.name == FitConfig().name:
        config = config.updated(name=default_name)
    names = people_names(specs)
    forget = people_items(specs, seed=config.seed) + (nameless_items(specs, seed=config.seed) if hardened else [])
    negatives = about_negatives(specs, mmlu=mmlu, other_passages=other_passages, related=related)
    classifier = about_classifier(specs, hardened=hardened, backbone=config.classifier.backbone,
                                  mode=config.classifier.mode, seed=config.seed)
    result = fit_guard(model, tokenizer, forget, [], config, general=negatives, entities=names,
                       classifier=classifier, progress=progress)
    if reverse:
        target, info = _reverse_target(specs, result, config, mmlu, other_passages, progress)
        if target is not None:
            result.guard.targets.append(target)
        result.guard.metadata["reverse_target"] = info
    return result


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ItemsError(f"{where}: 'aliases' must be a string or a list of strings")
    return tuple(value)


def read_people(path: str | os.PathLike) -> list[AboutSpec]:
    """People from a JSON Lines file, one object a line: ``name``; optionally ``aliases`` (a list),
    ``passage`` (the text itself) or ``passage_file`` (a path, relative to the file's folder)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")
    except OSError as exc:
        raise ItemsError(f"cannot read the people file {path}: {exc.strerror or exc}") from None
    people = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ItemsError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise ItemsError(f"{where}: expected an object with a 'name', got {type(row).__name__}")
        unknown = sorted(set(row) - {"name", "aliases", "passage", "passage_file"})
        if unknown:
            raise ItemsError(f"{where}: unknown field(s) {', '.join(unknown)}; use name, aliases, passage or passage_file")
        name = row.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ItemsError(f"{where}: 'name' must be a non-empty string")
        if "passage" in row and "passage_file" in row:
            raise ItemsError(f"{where}: give 'passage' or 'passage_file', not both")
        passage = row.get("passage", "")
        if "passage_file" in row:
            file = row["passage_file"]
            if not isinstance(file, str) or not file.strip():
                raise ItemsError(f"{where}: 'passage_file' must be a path")
            try:
                passage = (path.parent / file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ItemsError(f"{where}: cannot read passage_file {file}: {exc.strerror or exc}") from None
        if not isinstance(passage, str):
            raise ItemsError(f"{where}: 'passage' must be a string")
        people.append(AboutSpec(name.strip(), _string_list(row.get("aliases"), where), passage))
    if not people:
        raise ItemsError(f"the people file {path} names nobody; write one JSON object a line with a 'name'")
    as_people(people)
    return people


def rwku_people(targets: Sequence["RwkuTarget"]) -> list[AboutSpec]:
    """One spec per RWKU target from what a user would have: its name, its intro line (without RWKU's
    "Please forget NAME." instruction) and its passages. Its probes are test data and are never read."""
    specs = []
    for target in targets:
        intro = re.sub(rf"^\s*Please forget {re.escape(target.name)}\.\s*", "", target.intro)
        specs.append(AboutSpec(target.name, (), "\n".join(t for t in (intro, *target.passages) if t.strip())))
    return specs
