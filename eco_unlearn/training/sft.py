"""Supervised fine-tuning of a causal LM on question-answer pairs, to build benchmark models.

TOFU needs a *target* model that has learned the forget data and a *retain* model that never saw it. This
is the loop that makes them: full fine-tuning with AdamW, loss on the answer tokens only, length-bucketed
batches, bfloat16 autocast where the CPU has native bfloat16 units, and a checkpoint after every epoch so an
interrupted run resumes where it stopped. Questions and answers are tokenized exactly as
``GuardedModel.score`` joins them, so what is trained is what is scored.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from ..precision import DTYPES, use_bfloat16
from ..errors import FinetuneError
from ..io import atomic_dir, atomic_write_json
from ..models import context_length
from ..runtime.prompts import render_prompt
from ..validation import integer, number, one_of

__all__ = [
    "FinetuneConfig", "FinetuneError", "FinetuneResult", "collate", "encode_example", "finetune", "length_batches",
    "linear_schedule",
]



@dataclass
class FinetuneConfig:
    """Hyperparameters of one fine-tuning run. ``dtype``: ``"float32"``, ``"bfloat16"`` (autocast) or
    ``"auto"`` (bfloat16 where the CPU or GPU supports it natively)."""

    epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_length: int = 512
    seed: int = 0
    dtype: str = "auto"

    def validate(self) -> None:
        validate_loop(self)


def validate_loop(config: Any) -> None:
    """Check the training-loop settings a fine-tuning or unlearning config shares (``epochs``, ``batch_size``,
    ``max_length``, ``learning_rate``, ``warmup_fraction``, ``dtype``)."""
    for name in ("epochs", "batch_size", "max_length"):
        integer(getattr(config, name), name, minimum=1, error=FinetuneError)
    number(config.learning_rate, "learning_rate", low=0, low_open=True, error=FinetuneError)
    number(config.warmup_fraction, "warmup_fraction", low=0, high=1, high_open=True, error=FinetuneError)
    one_of(config.dtype, "dtype", DTYPES, error=FinetuneError)


@dataclass
class FinetuneResult:
    """What a run did: the mean training loss of each epoch and the time it took."""

    config: FinetuneConfig
    examples: int
    steps: int
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_example(tokenizer: Any, question: str, answer: str, *, chat: bool) -> tuple[list[int], int]:
    """Token ids of one training example and the number of prompt tokens (which carry no loss).

    The prompt is rendered like ``GuardedModel`` renders it and the answer is tokenized on its own, with a
    leading space outside the chat template, then followed by the end-of-sequence token.
    """
    rendered = render_prompt(question, tokenizer, chat=chat)
    prompt = tokenizer(rendered.text, add_special_tokens=rendered.add_special_tokens)["input_ids"]
    answer_ids = tokenizer(answer if chat else " " + answer, add_special_tokens=False)["input_ids"]
    if not answer.strip() or not answer_ids:  # plain mode adds a space: "" would still give a token
        raise FinetuneError(f"the answer to {question!r} is empty")
    return list(prompt) + list(answer_ids) + [tokenizer.eos_token_id], len(prompt)


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches in a random order: examples of similar length share a batch (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def linear_schedule(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup over ``warmup`` steps, then linear decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def constant_schedule(warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup over ``warmup`` steps, then 1; it does not depend on the
    run's length, so a run's state after k epochs is a k-epoch run's."""

    def factor(step: int) -> float:
        return (step + 1) / (warmup + 1) if step < warmup else 1.0

    return factor


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    with atomic_dir(path) as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(_untied(model, weights), str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", state)


def _untied(model: Any, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory: drop the tied output head (rebuilt on load)."""
    if getattr(model.config, "tie_word_embeddings", False):
        weights = {k: v for k, v in weights.items() if k != "lm_head.weight"}
    return weights


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    try:
        model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
        saved = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        return json.loads((path / "state.json").read_text())
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise FinetuneError(f"the checkpoint in {path} is unreadable ({exc}); remove it to start over") from None


def _checkpoint_run(path: Path) -> Any:
    try:
        return json.loads((path / "state.json").read_text()).get("run")
    except (OSError, ValueError, AttributeError) as exc:
        raise FinetuneError(f"the checkpoint in {path} is unreadable ({exc}); remove it to start over") from None


def finetune(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    config: FinetuneConfig | None = None,
    *,
    chat: bool | None = None,
    checkpoint: str | Path | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place on ``(question, answer)`` pairs and return what the run did.

    ``chat``: wrap questions in the tokenizer's chat template (default: when it has one). ``checkpoint``: a
    folder that receives the model, optimizer and position after every epoch; when it already holds a
    checkpoint of the same run, training resumes after its last finished epoch. ``progress(step, total,
    loss)`` is called after every optimizer step.
    """
    config = config or FinetuneConfig()
    config.validate()
    if not examples:
        raise FinetuneError("there are no examples to fine-tune on")
    chat = bool(tokenizer.chat_template) if chat is None else chat
    encoded = [encode_example(tokenizer, q, a, chat=chat) for q, a in examples]
    limit = min(config.max_length, context_length(model) or config.max_length)
    too_long = [i for i, (ids, _) in enumerate(encoded) if len(ids) > limit]
    if too_long:
        raise FinetuneError(
            f"{len(too_long)} examples exceed {limit} tokens (max_length or the model's context; first: example "
            f"{too_long[0]} with {len(encoded[too_long[0]][0])}); shorten them or raise max_length"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    lengths = [len(ids) for ids, _ in encoded]
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(total * config.warmup_fraction)

    data = hashlib.sha256(json.dumps(encoded).encode()).hexdigest()
    run_id = {"config": asdict(config), "examples": len(encoded), "data_sha256": data, "chat": chat}
    path = Path(checkpoint) if checkpoint is not None else None
    resume = path is not None and (path / "state.json").is_file()
    # refuse a foreign checkpoint before touching the model (its weights and requires_grad flags)
    if resume and _checkpoint_run(path) != run_id:
        raise FinetuneError(f"the checkpoint in {path} belongs to another run (other data or settings); remove it")

    frozen = {name: p.requires_grad for name, p in model.named_parameters()}
    result = FinetuneResult(config, len(encoded), total)
    bf16 = use_bfloat16(config.dtype, device)
    began = time.perf_counter()
    try:
        model.requires_grad_(True)  # models load frozen for inference; every weight trains here
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.learning_rate,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total, warmup))
        start_epoch = 0
        if resume:
            state = _load_checkpoint(path, model, optimizer, scheduler)
            start_epoch, result.epoch_losses = state["epoch"], state["epoch_losses"]
            result.resumed_from_epoch = start_epoch
        model.train()
        for epoch in range(start_epoch, config.epochs):
            rng = random.Random(config.seed * 1000 + epoch)
            torch.manual_seed(config.seed * 1000 + epoch)
            losses = []
            for b, batch_ids in enumerate(length_batches(lengths, config.batch_size, rng)):
                batch = {k: v.to(device) for k, v in collate([encoded[i] for i in batch_ids], pad_id).items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                if progress is not None:
                    progress(epoch * steps_per_epoch + b + 1, total, losses[-1])
            result.epoch_losses.append(sum(losses) / len(losses))
            if path is not None:
                state = {"run": run_id, "epoch": epoch + 1, "epoch_losses": result.epoch_losses}
                _save_checkpoint(path, model, optimizer, scheduler, state)
    finally:
        model.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(frozen[name])
    result.seconds = time.perf_counter() - began
    return result
