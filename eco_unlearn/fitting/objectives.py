"""Unlearning objectives that the strength search drives towards a target, a registry by name.

An objective holds its forget items and evaluates a guarded model on them with forward passes only.
``goal`` says whether lower (``"min"``) or higher (``"max"``) values are better; ``met(value)`` says
whether the target is reached; ``monotone`` objectives get better as the corruption grows, which lets
the search bisect. An objective with ``stops_early`` (``MatchReference``) takes ``evaluate(model,
stop_early=True)``: it may stop once part of its items show the target is out of reach. Register your
own with ``@register_objective("name")`` on a subclass of ``Objective``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from ..errors import ObjectiveError
from ..data.items import PromptItem
from ..metrics import (
    answer_probability, contains_answer, forget_quality, forget_quality_bound, rouge_l_recall, truth_ratio,
)
from ..registry import Registry
from .search import OutOfReach

if TYPE_CHECKING:
    from ..runtime.guarded import GuardedModel

__all__ = [
    "OBJECTIVES",
    "AnswerRecall",
    "ChoiceAccuracy",
    "MatchReference",
    "Objective",
    "ObjectiveError",
    "make_objective",
    "register_objective",
]



@dataclass
class Objective:
    """Base class: evaluate ``per_item`` values on the items and aggregate them into one number."""

    items: list[PromptItem]
    target: float | None = None
    chat: bool | None = None  # None: use the chat template when the model has one
    batch_size: int = 16
    baseline: float | None = field(default=None, init=False)  # the unguarded value, if prepare() measured it

    name: ClassVar[str] = ""
    goal: ClassVar[str] = "min"
    monotone: ClassVar[bool] = True
    stops_early: ClassVar[bool] = False  # True: evaluate() takes stop_early and may return OutOfReach
    needs: ClassVar[str] = "items"

    def __post_init__(self) -> None:
        self.items = [item for item in self.items if self.usable(item)]
        if not self.items:
            raise ObjectiveError(f"objective {self.name!r} needs {self.needs}; none of the forget items has them")
        if self.target is None:
            self.target = self.default_target()

    @staticmethod
    def usable(item: PromptItem) -> bool:
        return True

    def default_target(self) -> float:
        raise NotImplementedError

    def prepare(self, bare: "GuardedModel") -> None:
        """Compute what the objective needs from the unguarded model, once, before the search."""

    def per_item(self, model: "GuardedModel") -> np.ndarray:
        raise NotImplementedError

    def prompts(self) -> list[str] | None:
        """The prompts ``per_item`` sends to the model, when they are the items' own (else None): a guard
        that flags every one of them corrupts them as the search did, so the fit need not score them again."""
        return None

    def aggregate(self, values: np.ndarray) -> float:
        return float(np.mean(values))

    def evaluate(self, model: "GuardedModel") -> float:
        return self.aggregate(self.per_item(model))

    def met(self, value: float) -> bool:
        return value <= self.target if self.goal == "min" else value >= self.target

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return a < b if self.goal == "min" else a > b

    def _chat(self, model: "GuardedModel") -> bool:
        return bool(model.tokenizer.chat_template) if self.chat is None else self.chat

    def describe(self) -> str:
        sign = "<=" if self.goal == "min" else ">="
        return f"{self.name} {sign} {self.target:.3g} on {len(self.items)} forget items"


OBJECTIVES: Registry[type[Objective]] = Registry("objective", error=ObjectiveError)


def register_objective(name: str, *, replace: bool = False) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an ``Objective`` subclass available by ``name``."""

    def decorator(cls: type[Objective]) -> type[Objective]:
        OBJECTIVES.register(name, cls, replace=replace)
        cls.name = name
        return cls

    return decorator


def make_objective(name: str, items: Sequence[PromptItem], **options: Any) -> Objective:
    """Build the registered objective ``name`` on ``items`` with its options."""
    cls = OBJECTIVES.get(name)
    try:
        return cls(list(items), **options)
    except TypeError as exc:
        raise ObjectiveError(f"objective {name!r}: {exc}") from None


@register_objective("choice_accuracy")
@dataclass
class ChoiceAccuracy(Objective):
    """Multiple-choice accuracy on the forget questions, down to chance (mean 1/k) plus ``tolerance``.

    ``format="cloze"`` scores each choice as the answer's continuation by its length-normalised
    log-likelihood (suits small models); ``format="letters"`` lists the choices as A, B, C, ... and
    compares the next-token logits of the letters (suits instruction-tuned models, as in the ECO paper).
    """

    tolerance: float = 0.05
    format: str = "cloze"
    needs: ClassVar[str] = "'choices' with an 'answer_index'"

    def __post_init__(self) -> None:
        if self.format not in ("cloze", "letters"):
            raise ObjectiveError(f"choice_accuracy format must be 'cloze' or 'letters', not {self.format!r}")
        super().__post_init__()

    @staticmethod
    def usable(item: PromptItem) -> bool:
        return item.choices is not None

    def chance(self) -> float:
        return float(np.mean([1 / len(item.choices) for item in self.items]))

    def default_target(self) -> float:
        return self.chance() + self.tolerance

    def per_item(self, model: "GuardedModel") -> np.ndarray:
        chat = self._chat(model)
        if self.format == "letters":
            return self._letters(model, chat)
        prompts, continuations, owners = [], [], []
        for i, item in enumerate(self.items):
            for choice in item.choices:
                prompts.append(item.prompt)
                continuations.append((" " if not chat else "") + choice)
                owners.append(i)
        logprobs = model.score(prompts, continuations, chat=chat, batch_size=self.batch_size)
        scores = np.array([float(lp.mean()) for lp in logprobs])
        correct = np.zeros(len(self.items))
        start = 0
        for i, item in enumerate(self.items):
            k = len(item.choices)
            correct[i] = float(np.argmax(scores[start : start + k]) == item.answer_index)
            start += k
        return correct

    def prompts(self) -> list[str] | None:
        # cloze scores each choice after the question itself; letters appends the choices to it
        return [item.prompt for item in self.items] if self.format == "cloze" else None

    def _letters(self, model: "GuardedModel", chat: bool) -> np.ndarray:
        letters = "ABCDEFGHIJ"
        if max(len(item.choices) for item in self.items) > len(letters):
            raise ObjectiveError("the letters format supports at most 10 choices")
        prefix = "" if chat else " "
        letter_ids = [model.tokenizer(prefix + c, add_special_tokens=False)["input_ids"][-1] for c in letters]
        if len(set(letter_ids)) < len(letters):
            raise ObjectiveError("this tokenizer does not give each answer letter a token of its own; use format='cloze'")
        prompts = [
            item.prompt + "\n" + "\n".join(f"{letters[j]}. {c}" for j, c in enumerate(item.choices)) + "\nAnswer:"
            for item in self.items
        ]
        logits = model.next_token_logits(prompts, chat=chat, batch_size=self.batch_size)
        correct = np.zeros(len(self.items))
        for i, item in enumerate(self.items):
            options = logits[i, letter_ids[: len(item.choices)]]
            correct[i] = float(int(options.argmax()) == item.answer_index)
        return correct


@register_objective("answer_recall")
@dataclass
class AnswerRecall(Objective):
    """How much of the reference answers greedy generations still contain, down to ``target``.

    ``metric="contains"``: the fraction of answers found verbatim (normalised: case, punctuation,
    articles) in the generation; ``metric="rouge_l"``: mean ROUGE-L recall of the answer. With
    ``known_only`` (the default), only items the unguarded model answers count: forgetting is measured
    on knowledge the model has, so the value starts at its highest and chance-level guesses are ignored.
    """

    metric: str = "contains"
    max_new_tokens: int = 24
    known_only: bool = True
    needs: ClassVar[str] = "reference answers ('answer')"

    def __post_init__(self) -> None:
        if self.metric not in ("contains", "rouge_l"):
            raise ObjectiveError(f"answer_recall metric must be 'contains' or 'rouge_l', not {self.metric!r}")
        super().__post_init__()

    @staticmethod
    def usable(item: PromptItem) -> bool:
        return bool(item.answer and item.answer.strip())

    def default_target(self) -> float:
        return 0.05 if self.metric == "contains" else 0.2

    def prepare(self, bare: "GuardedModel") -> None:
        if self.known_only:
            values = self.per_item(bare)
            known = [item for item, value in zip(self.items, values) if value > 0]
            if not known:
                raise ObjectiveError(
                    "the unguarded model answers none of the forget items, so there is nothing to forget; "
                    "check the reference answers, or pass known_only=False"
                )
            self.items = known
            self.baseline = float(np.mean(values[values > 0]))

    def generations(self, model: "GuardedModel") -> list[str]:
        return model.generate(
            [item.prompt for item in self.items], chat=self._chat(model),
            max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
        )

    def prompts(self) -> list[str] | None:
        return [item.prompt for item in self.items]

    def per_item(self, model: "GuardedModel") -> np.ndarray:
        score = contains_answer if self.metric == "contains" else rouge_l_recall
        return np.array([float(score(item.answer, text)) for item, text in zip(self.items, self.generations(model))])


@register_objective("match_reference")
@dataclass
class MatchReference(Objective):
    """Make a per-item statistic of the forget set indistinguishable from a reference distribution:
    maximise the two-sample KS-test p-value, up to ``target``.

    ``statistic``: ``"answer_prob"`` (length-normalised probability of the answer) or ``"truth_ratio"``
    (TOFU's, from paraphrased and perturbed answers). The reference is either ``reference_values`` or
    ``reference_items``, on which the unguarded model computes the statistic: a surrogate of a model
    that never saw the forget set, such as held-out items of the same kind it was never trained on.
    """

    statistic: str = "truth_ratio"
    reference_values: Sequence[float] | None = None
    reference_items: Sequence[PromptItem] | None = None
    shared_prefix: bool = True  # score a question's answers with one prefill (score_shared); False: one row each
    chunk: int | None = None  # with stop_early: items scored between two checks of the bound (None: batch_size)
    monotone: ClassVar[bool] = False
    stops_early: ClassVar[bool] = True
    goal: ClassVar[str] = "max"
    needs: ClassVar[str] = "the answers the statistic scores"

    def __post_init__(self) -> None:
        if self.statistic not in ("answer_prob", "truth_ratio"):
            raise ObjectiveError(f"match_reference statistic must be 'answer_prob' or 'truth_ratio', not {self.statistic!r}")
        if (self.reference_values is None) == (self.reference_items is None):
            raise ObjectiveError("match_reference needs exactly one of reference_values or reference_items")
        chunk = self.chunk
        if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
            raise ObjectiveError(f"match_reference chunk must be a positive integer or None, not {self.chunk!r}")
        super().__post_init__()
        if self.reference_items is not None:
            self.reference_items = [i for i in self.reference_items if self.usable(i)]
            if not self.reference_items:
                raise ObjectiveError(f"none of the reference items has what the {self.statistic} statistic needs")
        elif len(self.reference_values) == 0:
            raise ObjectiveError("reference_values is empty")

    def usable(self, item: PromptItem) -> bool:  # type: ignore[override]  # depends on the statistic
        if self.statistic == "truth_ratio":
            return bool(item.paraphrased_answer and item.perturbed_answers)
        return bool(item.answer)

    def default_target(self) -> float:
        return 0.5

    def prepare(self, bare: "GuardedModel") -> None:
        if self.reference_values is None:
            self.reference_values = self.statistics(bare, self.reference_items).tolist()

    def statistics(self, model: "GuardedModel", items: Sequence[PromptItem]) -> np.ndarray:
        chat = self._chat(model)
        lead = "" if chat else " "
        if self.statistic == "answer_prob":
            logprobs = model.score([i.prompt for i in items], [lead + i.answer for i in items], chat=chat, batch_size=self.batch_size)
            return np.array([answer_probability(lp.tolist()) for lp in logprobs])
        groups = [[lead + a for a in (item.paraphrased_answer, *item.perturbed_answers)] for item in items]
        if self.shared_prefix:
            from ..runtime.shared_prefix import score_shared

            scored = score_shared(model, [i.prompt for i in items], groups, chat=chat, batch_size=self.batch_size)
        else:
            prompts = [item.prompt for item, group in zip(items, groups) for _ in group]
            flat = model.score(prompts, [a for group in groups for a in group], chat=chat, batch_size=self.batch_size)
            scored, start = [], 0
            for group in groups:
                scored.append(flat[start : start + len(group)])
                start += len(group)
        return np.array([truth_ratio(g[0].tolist(), [lp.tolist() for lp in g[1:]]) for g in scored])

    def per_item(self, model: "GuardedModel") -> np.ndarray:
        return self.statistics(model, self.items)

    def prompts(self) -> list[str] | None:
        return [item.prompt for item in self.items]

    def evaluate(self, model: "GuardedModel", *, stop_early: bool = False) -> float:
        """The KS p-value on ``model``. With ``stop_early`` the items are scored ``chunk`` at a time and the
        evaluation stops once even the most favourable values of the unscored items would miss the target
        (``metrics.forget_quality_bound``), returning ``OutOfReach(bound)``: at a strength far from the
        reference's a few items suffice, and met or missed is decided as the full evaluation decides it. The
        default chunk, ``batch_size``, is how the shared-prefix scorer (and ``answer_prob``) batches the
        questions anyway, so the values are those of a full evaluation to the last bit and nothing is slower
        when no chunk decides. The chunks go through ``statistics``, not ``per_item``."""
        if not stop_early:
            return self.aggregate(self.per_item(model))
        reference = self._reference()
        values: list[float] = []
        chunk = self.chunk or self.batch_size
        for start in range(0, len(self.items), chunk):
            values.extend(self.statistics(model, self.items[start : start + chunk]).tolist())
            if len(values) < len(self.items):
                bound = forget_quality_bound(values, len(self.items), reference)
                if not self.met(bound):
                    return OutOfReach(bound)
        return self.aggregate(np.array(values))

    def aggregate(self, values: np.ndarray) -> float:
        return forget_quality(values, self._reference())

    def _reference(self) -> Sequence[float]:
        if self.reference_values is None:
            raise ObjectiveError("match_reference has no reference values yet; call prepare() with the unguarded model")
        return self.reference_values
