"""One training loop for every gradient unlearning baseline (``METHODS``): each step draws a batch of
forget pairs (with their alternative answers, for methods that prefer one), a batch of retain pairs, and
minimises the method's loss; the pieces are the fine-tuning loop's (``sft``): the same tokenization,
length-bucketed batches, AdamW with linear warmup and decay, gradient clipping and bfloat16 autocast.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..errors import FinetuneError
from ..validation import one_of
from .losses import sequence_nll
from .methods import METHODS, UnlearnMethod
from ..precision import use_bfloat16
from .sft import collate, constant_schedule, encode_example, length_batches, linear_schedule, validate_loop

__all__ = ["SCHEDULES", "Step", "UnlearnConfig", "UnlearnResult", "unlearn"]

SCHEDULES = ("linear", "constant")

Pairs = Sequence[tuple[str, str]]


@dataclass
class UnlearnConfig:
    """One unlearning run: ``method`` (a name in ``METHODS``), the loop's settings, and ``params``, which
    override the method's own defaults (``beta``, ``alpha``, ...). Steps per epoch: forget pairs / batch.

    ``schedule``: ``linear`` (warmup over ``warmup_fraction`` of all steps, then linear decay to zero, as
    open-unlearning's trainers) or ``constant`` (warmup over ``warmup_fraction`` of the first epoch's steps,
    then a flat rate). Under ``constant`` nothing depends on ``epochs``, so the state after epoch k of a
    long run is the state a k-epoch run ends in: one run scores a whole epoch grid (``checkpoint``)."""

    method: str = "npo"
    epochs: int = 5
    learning_rate: float = 1e-5
    batch_size: int = 8
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    max_length: int = 512
    seed: int = 0
    dtype: str = "auto"
    schedule: str = "linear"
    params: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> tuple[UnlearnMethod, dict[str, Any]]:
        """The method and its hyper-parameters (defaults, then ``params``), checked."""
        method = METHODS.get(self.method)
        unknown = sorted(set(self.params) - set(method.defaults))
        if unknown:
            raise FinetuneError(
                f"{self.method} has no hyper-parameter {', '.join(unknown)}; it takes {', '.join(method.defaults) or 'none'}"
            )
        validate_loop(self)
        one_of(self.schedule, "schedule", SCHEDULES, error=FinetuneError)
        return method, {**method.defaults, **self.params}


@dataclass
class UnlearnResult:
    """What a run did: its settings with the method's resolved hyper-parameters, the mean loss per epoch
    and the time it took."""

    config: UnlearnConfig
    params: dict[str, Any]
    steps: int
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Step:
    """One step's batches (``forget``, ``retain``, and ``alternate``: the forget questions with their
    alternative answers) and the forward passes a loss asks for, each run at most once per step; the
    reference model's without gradients."""

    def __init__(self, model: Any, reference: Any, batches: dict[str, dict[str, torch.Tensor]], bf16: bool) -> None:
        self.model, self.reference, self.batches, self.bf16 = model, reference, batches, bf16
        self._outputs: dict[tuple[str, bool, bool], Any] = {}

    def _forward(self, split: str, reference: bool, hidden: bool = False) -> Any:
        key = (split, reference, hidden)
        if key not in self._outputs:
            batch = self.batches[split]
            net = self.reference if reference else self.model
            device = batch["input_ids"].device
            with torch.set_grad_enabled(not reference), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                self._outputs[key] = net(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=hidden
                )
        return self._outputs[key]

    def labels(self, split: str) -> torch.Tensor:
        return self.batches[split]["labels"]

    def answer_mask(self, split: str) -> torch.Tensor:
        """1 at the answer tokens (those with a label), else 0."""
        return (self.labels(split) != -100).long()

    def logits(self, split: str, *, reference: bool = False) -> torch.Tensor:
        return self._forward(split, reference).logits

    def nll(self, split: str, *, reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed answer NLL per sequence and its token count (``losses.sequence_nll``)."""
        return sequence_nll(self.logits(split, reference=reference), self.labels(split))

    def hidden(self, split: str, layer: int, *, reference: bool = False) -> torch.Tensor:
        """The output ``[B, T, D]`` of decoder layer ``layer``."""
        return self._forward(split, reference, hidden=True).hidden_states[layer + 1]


def unlearn(
    model: Any,
    tokenizer: Any,
    forget: Pairs,
    retain: Pairs,
    config: UnlearnConfig | None = None,
    *,
    alternates: Sequence[str] | None = None,
    chat: bool | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    checkpoint: Callable[[int, UnlearnResult], None] | None = None,
) -> UnlearnResult:
    """Unlearn the ``forget`` (question, answer) pairs from ``model``, in place, keeping ``retain``.

    ``alternates``: one alternative answer per forget pair (for methods that prefer one, e.g. ``idkdpo``).
    ``chat``: wrap questions in the chat template (default: when the tokenizer has one). ``progress(step,
    total, loss)`` after every optimizer step; ``checkpoint(epoch, result)`` after every epoch (1-based), the
    model in its state then and ``result.seconds`` the training time so far. The model is left in eval mode
    with its ``requires_grad`` flags.
    """
    config = config or UnlearnConfig()
    method, params = config.resolved()
    if not forget:
        raise FinetuneError("there are no forget pairs to unlearn")
    if method.alternate and (alternates is None or len(alternates) != len(forget)):
        raise FinetuneError(f"{config.method} needs one alternative answer per forget pair ({len(forget)})")
    if not retain and params.get("alpha"):
        raise FinetuneError(f"{config.method} has a retain loss (alpha={params['alpha']}) but no retain pairs were given")
    chat = bool(tokenizer.chat_template) if chat is None else chat
    encoded = {
        "forget": [encode_example(tokenizer, q, a, chat=chat) for q, a in forget],
        "retain": [encode_example(tokenizer, q, a, chat=chat) for q, a in retain],
    }
    if method.alternate:
        encoded["alternate"] = [encode_example(tokenizer, q, a, chat=chat) for (q, _), a in zip(forget, alternates)]
    longest = max(len(ids) for rows in encoded.values() for ids, _ in rows)
    if longest > config.max_length:
        raise FinetuneError(f"an example has {longest} tokens, over max_length={config.max_length}; raise it")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    steps_per_epoch = math.ceil(len(forget) / config.batch_size)
    total = steps_per_epoch * config.epochs
    result = UnlearnResult(config, params, total)
    frozen = {name: p.requires_grad for name, p in model.named_parameters()}
    reference = copy.deepcopy(model).eval().requires_grad_(False) if method.reference else None
    bf16 = use_bfloat16(config.dtype, device)
    began = time.perf_counter()
    try:
        model.requires_grad_(False)
        trainable = method.trainable(model, params) if method.trainable else list(model.parameters())
        for p in trainable:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        if config.schedule == "constant":
            factor = constant_schedule(int(steps_per_epoch * config.warmup_fraction))
        else:
            factor = linear_schedule(total, int(total * config.warmup_fraction))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        state: dict[str, Any] = {}
        model.train()
        for epoch in range(config.epochs):
            rng = random.Random(config.seed * 1000 + epoch)
            torch.manual_seed(config.seed * 1000 + epoch)
            losses = []
            for b, rows in enumerate(length_batches([len(ids) for ids, _ in encoded["forget"]], config.batch_size, rng)):
                picked = {"forget": rows, "alternate": rows}
                if encoded["retain"]:
                    picked["retain"] = [rng.randrange(len(encoded["retain"])) for _ in rows]
                batches = {
                    split: {k: v.to(device) for k, v in collate([encoded[split][i] for i in picked[split]], pad_id).items()}
                    for split in encoded
                }
                loss = method.loss(Step(model, reference, batches, bf16), params, state)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.item()))
                if progress is not None:
                    progress(epoch * steps_per_epoch + b + 1, total, losses[-1])
            result.epoch_losses.append(sum(losses) / len(losses))
            if checkpoint is not None:  # its own time (saving a model) is not training time
                paused = time.perf_counter()
                result.seconds = paused - began
                model.eval()
                checkpoint(epoch + 1, result)
                model.train()
                began += time.perf_counter() - paused
    finally:
        model.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(frozen[name])
    result.seconds = time.perf_counter() - began
    return result
