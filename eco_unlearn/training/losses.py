"""The losses of the gradient unlearning baselines, as pure functions of per-sequence or per-token tensors.

Each follows its paper and open-unlearning's implementation (``src/trainer/utils.py`` and
``src/trainer/unlearn``); where open-unlearning averages over every position (KL, UNDIAL), these average
over the answer tokens only, which is what the other losses read. Sequence NLLs are *sums* over a
sequence's answer tokens, as in NPO and DPO; ``mean_nll`` is the token mean a causal LM's ``loss`` gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "activation_mse", "dpo_loss", "kl_to_reference", "mean_nll", "npo_loss", "sequence_nll", "simnpo_loss", "undial_loss",
]


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL ``[B]`` of each sequence's labelled tokens (labels -100 are ignored) and their count ``[B]``.
    ``logits[:, t]`` predicts ``labels[:, t + 1]``, as in a causal LM."""
    shifted = labels[:, 1:]
    per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), shifted, ignore_index=-100, reduction="none")
    return per_token.sum(-1), (shifted != -100).sum(-1)


def mean_nll(nll: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """NLL per labelled token over the whole batch: what ``model(labels=...).loss`` is."""
    return nll.sum() / count.sum().clamp(min=1)


def npo_loss(nll: torch.Tensor, reference_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative Preference Optimization (Zhang et al., 2024): ``-(2/beta) mean log sigmoid(beta (nll - ref))``,
    the DPO loss with the forget answer as the only, losing, response; 2 ln 2 / beta when nothing has moved."""
    return -(2 / beta) * F.logsigmoid(beta * (nll - reference_nll)).mean()


def simnpo_loss(nll: torch.Tensor, count: torch.Tensor, beta: float, delta: float = 0.0) -> torch.Tensor:
    """SimNPO (Fan et al., 2024): NPO without a reference model, on the length-normalised NLL minus ``delta``."""
    return -(2 / beta) * F.logsigmoid(beta * (nll / count.clamp(min=1) - delta)).mean()


def dpo_loss(
    win_nll: torch.Tensor, reference_win_nll: torch.Tensor, lose_nll: torch.Tensor, reference_lose_nll: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO (Rafailov et al., 2023) in open-unlearning's scaling: ``-(2/beta) mean log sigmoid(beta (log-ratio
    of the winner - log-ratio of the loser))``, a log-ratio being ``reference_nll - nll``."""
    margin = (reference_win_nll - win_nll) - (reference_lose_nll - lose_nll)
    return -(2 / beta) * F.logsigmoid(beta * margin).mean()


def kl_to_reference(logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) of the next-token distributions, averaged over the labelled positions."""
    mask = labels[:, 1:] != -100
    log_p = F.log_softmax(logits[:, :-1].float(), dim=-1)[mask]
    log_ref = F.log_softmax(reference_logits[:, :-1].float(), dim=-1)[mask]
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).mean() if mask.any() else logits.sum() * 0


def activation_mse(activations: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's distance (Li et al., 2024, WMDP): squared error averaged over the hidden dimension, then over
    each sequence's masked tokens, then over the batch. ``target`` broadcasts to ``activations``."""
    squared = (activations.float() - target.float()).pow(2).mean(-1) * mask
    return (squared.sum(-1) / mask.sum(-1).clamp(min=1)).mean()


def undial_loss(logits: torch.Tensor, reference_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL (Dong et al., 2024): cross-entropy to the reference's next-token distribution with the true
    token's logit lowered by ``beta``, averaged over the labelled positions (self-distillation away from it)."""
    shifted = labels[:, 1:]
    mask = shifted != -100
    teacher = reference_logits[:, :-1].float()[mask]
    teacher = teacher.scatter_add(-1, shifted[mask][:, None], torch.full_like(teacher[:, :1], -beta))
    log_p = F.log_softmax(logits[:, :-1].float(), dim=-1)[mask]
    return -(F.softmax(teacher, dim=-1) * log_p).sum(-1).mean() if mask.any() else logits.sum() * 0
