"""Corruptions of prompt embeddings: a registry of pure tensor functions.

Every corruption has the signature ``fn(embeds[B,T,D], mask[B,T], strength, generator, **params)`` and
returns a new tensor equal to ``embeds`` wherever ``mask`` is False: only selected prompt tokens change.
``generator`` is a CPU ``torch.Generator``; randomness is drawn from it alone, so a seeded generator
gives the same corruption every time.

What ``strength`` means, per family:

* ``gaussian_*``: sigma, the standard deviation of additive N(0, sigma^2) noise, in the units of the
  embedding entries (SmolLM2's entries have a standard deviation of about 0.14). Range [0, inf).
* ``zero_*`` and ``flip_*``: k, the number of embedding dimensions zeroed or sign-flipped per token
  (rounded to an integer). Range [0, hidden size].
* ``shuffle`` and ``reverse``: the interpolation weight s in ``(1 - s) * x + s * permuted(x)`` between
  each selected token and the token that takes its place. Range [0, 1]; 1 is a full permutation.
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from ..errors import CorruptionError
from ..registry import Registry
from ..validation import is_integer, is_number

__all__ = [
    "CORRUPTIONS",
    "HIDDEN_SIZE",
    "Corruption",
    "CorruptionSpec",
    "apply_corruption",
    "get_corruption",
    "register_corruption",
]

HIDDEN_SIZE = "hidden_size"  # upper bound of a strength range that is the model's hidden size


class CorruptionFn(Protocol):
    def __call__(
        self, embeds: torch.Tensor, mask: torch.Tensor, strength: float, generator: torch.Generator, **params: Any
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: the function, its valid strength range and what strength means.

    ``params`` maps each keyword-only parameter to its default, which also sets the type it takes: a
    bool default takes a bool, an int or None default a non-negative integer (or None), a float default a
    finite number.
    """

    name: str
    fn: CorruptionFn
    strength_range: tuple[float, float | str]
    strength_meaning: str
    params: dict[str, Any] = field(default_factory=dict)

    def check_strength(self, strength: float, hidden_size: int | None = None) -> None:
        low, high = self.strength_range
        if high == HIDDEN_SIZE:
            high = float(hidden_size) if hidden_size is not None else math.inf
        if not (is_number(strength) and low <= strength <= high):
            raise CorruptionError(
                f"strength {strength!r} is out of range for corruption {self.name!r}: "
                f"{self.strength_meaning} must lie in [{low:g}, {high:g}]"
            )

    def check_params(self, params: dict[str, Any]) -> None:
        unknown = set(params) - set(self.params)
        if unknown:
            raise CorruptionError(
                f"corruption {self.name!r} takes no parameter(s) {', '.join(sorted(unknown))}; "
                f"it accepts: {', '.join(self.params) or 'none'}"
            )
        for name, value in params.items():
            default = self.params[name]
            if isinstance(default, bool):
                ok, expected = isinstance(value, bool), "true or false"
            elif isinstance(default, float):
                ok, expected = is_number(value), "a finite number"
            elif default is None or isinstance(default, int):
                is_count = is_integer(value) and value >= 0
                ok, expected = is_count or (value is None and default is None), "a non-negative integer"
            else:
                ok, expected = True, ""
            if not ok:
                raise CorruptionError(f"corruption {self.name!r}: parameter {name}={value!r} must be {expected}")


CORRUPTIONS: Registry[Corruption] = Registry("corruption", error=CorruptionError)


def register_corruption(
    name: str, strength_range: tuple[float, float | str], strength_meaning: str, *, replace: bool = False
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator that adds ``fn`` to ``CORRUPTIONS`` under ``name``; use it to add your own corruption.

    Its keyword-only parameters (with defaults) become the corruption's parameters. Registering a name
    that exists already raises, unless ``replace=True``.
    """

    def decorator(fn: CorruptionFn) -> CorruptionFn:
        params = {
            p.name: p.default
            for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        CORRUPTIONS.register(name, Corruption(name, fn, strength_range, strength_meaning, params), replace=replace)
        return fn

    return decorator


def _where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.unsqueeze(-1), new, old)


def _noise(shape: torch.Size, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


def _first_n(hidden: int, n_dims: int | None) -> int:
    return hidden if n_dims is None else max(0, min(int(n_dims), hidden))


def _topk_dims(embeds: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean [B,T,D] selecting each token's k largest-magnitude dimensions."""
    k = max(0, min(int(k), embeds.shape[-1]))
    chosen = torch.zeros(embeds.shape, dtype=torch.bool, device=embeds.device)
    if k:
        chosen.scatter_(-1, embeds.abs().topk(k, dim=-1).indices, True)
    return chosen


def _dims_mask(embeds: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    """Boolean [B,T,D] from a boolean [D] selection of dimensions."""
    return dims.to(embeds.device).expand(embeds.shape)


@register_corruption("gaussian_first_n", (0.0, math.inf), "sigma (noise standard deviation)")
def gaussian_first_n(embeds, mask, strength, generator, *, n_dims: int | None = None):
    """Add N(0, sigma^2) noise to the first ``n_dims`` dimensions (all dimensions by default)."""
    n = _first_n(embeds.shape[-1], n_dims)
    noise = _noise(embeds.shape, generator, embeds) * strength
    noise[..., n:] = 0
    return _where(mask, embeds + noise, embeds)


@register_corruption("gaussian_random_n", (0.0, math.inf), "sigma (noise standard deviation)")
def gaussian_random_n(embeds, mask, strength, generator, *, n_dims: int | None = None):
    """Add N(0, sigma^2) noise to ``n_dims`` dimensions drawn at random from the generator."""
    hidden = embeds.shape[-1]
    n = _first_n(hidden, n_dims)
    dims = torch.zeros(hidden, dtype=torch.bool)
    dims[torch.randperm(hidden, generator=generator)[:n]] = True
    noise = _noise(embeds.shape, generator, embeds) * strength
    noise = torch.where(_dims_mask(embeds, dims), noise, torch.zeros_like(noise))
    return _where(mask, embeds + noise, embeds)


@register_corruption("gaussian_topk", (0.0, math.inf), "sigma (noise standard deviation)")
def gaussian_topk(embeds, mask, strength, generator, *, k: int = 64):
    """Add N(0, sigma^2) noise to each token's ``k`` largest-magnitude dimensions."""
    noise = _noise(embeds.shape, generator, embeds) * strength
    noise = torch.where(_topk_dims(embeds, k), noise, torch.zeros_like(noise))
    return _where(mask, embeds + noise, embeds)


@register_corruption("zero_first_n", (0.0, HIDDEN_SIZE), "k (dimensions zeroed)")
def zero_first_n(embeds, mask, strength, generator):
    """Set the first k dimensions to zero."""
    out = embeds.clone()
    out[..., : int(round(strength))] = 0
    return _where(mask, out, embeds)


@register_corruption("zero_topk", (0.0, HIDDEN_SIZE), "k (dimensions zeroed)")
def zero_topk(embeds, mask, strength, generator):
    """Set each token's k largest-magnitude dimensions to zero."""
    out = embeds.masked_fill(_topk_dims(embeds, round(strength)), 0)
    return _where(mask, out, embeds)


@register_corruption("flip_first_n", (0.0, HIDDEN_SIZE), "k (dimensions sign-flipped)")
def flip_first_n(embeds, mask, strength, generator):
    """Flip the sign of the first k dimensions."""
    out = embeds.clone()
    k = int(round(strength))
    out[..., :k] = -out[..., :k]
    return _where(mask, out, embeds)


@register_corruption("flip_topk", (0.0, HIDDEN_SIZE), "k (dimensions sign-flipped)")
def flip_topk(embeds, mask, strength, generator):
    """Flip the sign of each token's k largest-magnitude dimensions."""
    out = torch.where(_topk_dims(embeds, round(strength)), -embeds, embeds)
    return _where(mask, out, embeds)


def _permute_masked(embeds, mask, strength, order: Callable[[int], torch.Tensor]):
    out = embeds.clone()
    for row in range(embeds.shape[0]):
        positions = mask[row].nonzero().squeeze(-1)
        if positions.numel() < 2:
            continue
        permuted = embeds[row, positions[order(positions.numel()).to(positions.device)]]
        out[row, positions] = (1 - strength) * embeds[row, positions] + strength * permuted
    return out


@register_corruption("shuffle", (0.0, 1.0), "s (interpolation weight towards a random permutation)")
def shuffle(embeds, mask, strength, generator):
    """Mix each selected token with the one a random permutation of the selected positions puts there."""
    return _permute_masked(embeds, mask, strength, lambda n: torch.randperm(n, generator=generator))


@register_corruption("reverse", (0.0, 1.0), "s (interpolation weight towards the reversed order)")
def reverse(embeds, mask, strength, generator):
    """Mix each selected token with the one at the mirrored selected position."""
    return _permute_masked(embeds, mask, strength, lambda n: torch.arange(n - 1, -1, -1))


def get_corruption(name: str) -> Corruption:
    """Look up a registered corruption, with a clear error naming the known ones."""
    return CORRUPTIONS.get(name)


@dataclass(frozen=True)
class CorruptionSpec:
    """A corruption chosen by name, with its strength and extra parameters; serialisable to JSON.

    The strength has no default: a forgotten strength would flag prompts and change nothing.
    """

    name: str
    strength: float
    params: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.name, self.strength, json.dumps(self.params, sort_keys=True, default=str)))

    def validate(self, hidden_size: int | None = None) -> Corruption:
        """The registered corruption, after checking the parameters and the strength against it."""
        corruption = get_corruption(self.name)
        corruption.check_params(self.params)
        corruption.check_strength(self.strength, hidden_size)
        return corruption

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CorruptionSpec":
        params, strength = data.get("params", {}), data["strength"]
        if not isinstance(params, dict):
            raise CorruptionError(f"corruption 'params' must be an object, not {type(params).__name__}")
        if not is_number(strength):
            raise CorruptionError(f"corruption strength must be a finite number, not {strength!r}")
        return cls(name=data["name"], strength=float(strength), params=dict(params))


def apply_corruption(
    spec: CorruptionSpec, embeds: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Validate ``spec`` against ``embeds`` and apply it to the masked positions."""
    corruption = spec.validate(embeds.shape[-1])
    if not mask.any():
        return embeds
    return corruption.fn(embeds, mask, spec.strength, generator, **spec.params)
