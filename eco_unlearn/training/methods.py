"""The gradient unlearning baselines by name: each is a loss over one training step, its hyper-parameter
defaults, and what it needs (a frozen reference model, "I don't know" answers, a subset of weights).

Defaults are open-unlearning's (``configs/trainer``) or the paper's, with the forget loss weighted by
``gamma`` and the retain loss by ``alpha``; learning rate and epochs are the training loop's
(``UnlearnConfig``), tuned per method by the TOFU comparison's grid. Register your own with
``METHODS.register(name, UnlearnMethod(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import FinetuneError
from ..registry import Registry
from .losses import activation_mse, dpo_loss, kl_to_reference, mean_nll, npo_loss, simnpo_loss, undial_loss

if TYPE_CHECKING:
    from .unlearn import Step

__all__ = ["METHODS", "UnlearnMethod", "rmu_layer"]

Loss = Callable[["Step", dict[str, Any], dict[str, Any]], torch.Tensor]  # (step, params, state kept across steps)


@dataclass(frozen=True)
class UnlearnMethod:
    """``loss(step, params, state)``: the loss of one step. ``reference``: it reads a frozen copy of the
    model before unlearning; ``alternate``: it reads an alternative answer per forget question;
    ``trainable(model, params)``: the parameters that train (None: all)."""

    loss: Loss
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    reference: bool = False
    alternate: bool = False
    trainable: Callable[[Any, dict[str, Any]], list[torch.nn.Parameter]] | None = None


METHODS: Registry[UnlearnMethod] = Registry("unlearning method", error=FinetuneError)


def _forget_ascent(step: "Step") -> torch.Tensor:
    return -mean_nll(*step.nll("forget"))


def _retain_nll(step: "Step") -> torch.Tensor:
    return mean_nll(*step.nll("retain"))


METHODS.register("ga", UnlearnMethod(
    lambda s, p, _: _forget_ascent(s), "Gradient Ascent: maximise the NLL of the forget answers",
))
METHODS.register("gd", UnlearnMethod(
    lambda s, p, _: p["gamma"] * _forget_ascent(s) + p["alpha"] * _retain_nll(s),
    "Gradient Difference: gradient ascent on forget plus NLL on retain", {"gamma": 1.0, "alpha": 1.0},
))
METHODS.register("kl", UnlearnMethod(
    lambda s, p, _: p["gamma"] * _forget_ascent(s)
    + p["alpha"] * kl_to_reference(s.logits("retain"), s.logits("retain", reference=True), s.labels("retain")),
    "gradient ascent on forget plus KL to the frozen target on retain", {"gamma": 1.0, "alpha": 1.0}, reference=True,
))


def _npo(step: "Step", params: dict[str, Any]) -> torch.Tensor:
    nll, _ = step.nll("forget")
    reference, _ = step.nll("forget", reference=True)
    return params["gamma"] * npo_loss(nll, reference, params["beta"])


METHODS.register("npo", UnlearnMethod(
    lambda s, p, _: _npo(s, p), "Negative Preference Optimization on forget", {"beta": 0.1, "gamma": 1.0}, reference=True,
))
METHODS.register("npo_rt", UnlearnMethod(
    lambda s, p, _: _npo(s, p) + p["alpha"] * _retain_nll(s), "NPO plus NLL on retain (NPO-RT)",
    {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}, reference=True,
))
METHODS.register("simnpo", UnlearnMethod(
    lambda s, p, _: p["gamma"] * simnpo_loss(*s.nll("forget"), p["beta"], p["delta"]) + p["alpha"] * _retain_nll(s),
    "SimNPO: reference-free, length-normalised NPO, plus NLL on retain",
    {"beta": 4.5, "delta": 0.0, "gamma": 0.125, "alpha": 1.0},
))


def _idkdpo(step: "Step", params: dict[str, Any]) -> torch.Tensor:
    win, lose = step.nll("alternate")[0], step.nll("forget")[0]
    reference_win, reference_lose = step.nll("alternate", reference=True)[0], step.nll("forget", reference=True)[0]
    return params["gamma"] * dpo_loss(win, reference_win, lose, reference_lose, params["beta"]) + params["alpha"] * _retain_nll(step)


METHODS.register("idkdpo", UnlearnMethod(
    lambda s, p, _: _idkdpo(s, p), "DPO preferring an 'I don't know' answer to the forget answer, plus NLL on retain",
    {"beta": 0.1, "gamma": 1.0, "alpha": 1.0}, reference=True, alternate=True,
))


def rmu_layer(model: Any, params: dict[str, Any]) -> int:
    """The decoder layer RMU steers: ``params["layer"]``, or a quarter of the way up (WMDP: 7 of 32)."""
    layers = model.config.num_hidden_layers
    layer = params.get("layer")
    layer = layers // 4 if layer is None else int(layer)
    if not 0 <= layer < layers:
        raise FinetuneError(f"RMU layer {layer} does not exist; the model has layers 0 to {layers - 1}")
    return layer


def _rmu_trainable(model: Any, params: dict[str, Any]) -> list[torch.nn.Parameter]:
    return list(model.model.layers[rmu_layer(model, params)].mlp.parameters())


def _rmu(step: "Step", params: dict[str, Any], state: dict[str, Any]) -> torch.Tensor:
    layer = rmu_layer(step.model, params)
    forget = step.hidden("forget", layer)
    mask = step.answer_mask("forget")
    if "control" not in state:  # fixed for the run: a random direction, scaled to the activations' norm
        norm = step.hidden("forget", layer, reference=True).norm(dim=-1)[mask.bool()].mean()
        generator = torch.Generator().manual_seed(int(params["vector_seed"]))
        direction = torch.rand(forget.shape[-1], generator=generator)
        state["control"] = (direction / direction.norm() * params["steering_coeff"] * norm).to(forget.device)
    retain = activation_mse(
        step.hidden("retain", layer), step.hidden("retain", layer, reference=True), step.answer_mask("retain")
    )
    return params["gamma"] * activation_mse(forget, state["control"], mask) + params["alpha"] * retain


METHODS.register("rmu", UnlearnMethod(
    _rmu, "RMU: steer one layer's activations on forget to a fixed random vector, keep them on retain; "
    "only that layer's MLP trains", {"steering_coeff": 2.0, "layer": None, "vector_seed": 0, "gamma": 1.0, "alpha": 1.0},
    reference=True, trainable=_rmu_trainable,
))
METHODS.register("undial", UnlearnMethod(
    lambda s, p, _: p["gamma"] * undial_loss(s.logits("forget"), s.logits("forget", reference=True), s.labels("forget"), p["beta"])
    + (p["alpha"] * _retain_nll(s) if p["alpha"] else 0.0),
    "UNDIAL: self-distil towards the target's distribution with the true token's logit lowered",
    {"beta": 10.0, "gamma": 1.0, "alpha": 0.0}, reference=True,
))
