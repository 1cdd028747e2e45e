"""Tests of eco_unlearn.runtime.corruption: every registered corruption, their specific semantics, CorruptionSpec."""

from __future__ import annotations

import math

import pytest
import torch

from eco_unlearn.runtime.corruption import (
    CORRUPTIONS,
    HIDDEN_SIZE,
    CorruptionSpec,
    apply_corruption,
    get_corruption,
    register_corruption,
)
from eco_unlearn.errors import CorruptionError

B, T, D = 3, 7, 16
BUILTIN = sorted(CORRUPTIONS)
GAUSSIAN = [n for n in BUILTIN if n.startswith("gaussian_")]
PERMUTATIONS = ["shuffle", "reverse"]


def make_embeds(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g)


def make_mask(seed: int = 1) -> torch.Tensor:
    """A random [3,7] mask with at least 3 selected and 1 unselected position per row."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T, generator=g) < 0.5
    mask[:, 0] = False
    mask[:, 1:4] = True
    return mask


def mid_strength(name: str) -> float:
    low, high = CORRUPTIONS[name].strength_range
    if high == HIDDEN_SIZE:
        return D / 2
    if math.isinf(high):
        return 0.5
    return (low + high) / 2


def run(name, strength, embeds, mask, seed=123, **params):
    return apply_corruption(CorruptionSpec(name, strength, params), embeds, mask, torch.Generator().manual_seed(seed))


def test_registry_has_the_documented_corruptions():
    """The registry contains the documented families (parametrized tests below cover all of them)."""
    assert set(BUILTIN) >= {
        "gaussian_first_n",
        "gaussian_random_n",
        "gaussian_topk",
        "zero_first_n",
        "zero_topk",
        "flip_first_n",
        "flip_topk",
        "shuffle",
        "reverse",
    }


@pytest.mark.parametrize("name", BUILTIN)
def test_unmasked_positions_bit_identical_and_masked_changed(name):
    """Only masked positions change; for non-permutations every masked token changes."""
    embeds, mask = make_embeds(), make_mask()
    out = run(name, mid_strength(name), embeds, mask)
    assert out.shape == embeds.shape and out.dtype == embeds.dtype
    assert torch.equal(out[~mask], embeds[~mask])
    changed = (out != embeds).any(-1)  # [B,T]
    assert not changed[~mask].any()
    if name in PERMUTATIONS:
        # a permutation may map some positions to themselves, but each row with >= 3 positions moves
        for b in range(B):
            assert changed[b].any(), f"row {b} unchanged"
    else:
        assert changed[mask].all()


@pytest.mark.parametrize("name", BUILTIN)
def test_input_not_mutated(name):
    """The corruption returns a new tensor and leaves its input untouched."""
    embeds, mask = make_embeds(), make_mask()
    before, mask_before = embeds.clone(), mask.clone()
    out = run(name, mid_strength(name), embeds, mask)
    assert torch.equal(embeds, before)
    assert torch.equal(mask, mask_before)
    assert out.data_ptr() != embeds.data_ptr()


@pytest.mark.parametrize("name", BUILTIN)
def test_same_seed_same_output(name):
    """Same seeded generator, same corruption."""
    embeds, mask = make_embeds(), make_mask()
    assert torch.equal(run(name, mid_strength(name), embeds, mask, seed=7), run(name, mid_strength(name), embeds, mask, seed=7))


@pytest.mark.parametrize("name", GAUSSIAN + ["shuffle"])
def test_different_seed_different_output(name):
    """Randomised corruptions draw from the generator: another seed gives another result."""
    embeds, mask = make_embeds(), make_mask()
    a = run(name, mid_strength(name), embeds, mask, seed=1)
    b = run(name, mid_strength(name), embeds, mask, seed=2)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", BUILTIN)
def test_strength_zero_is_identity(name):
    """Strength 0 (sigma 0, k 0, weight 0) leaves the embeddings equal to the input."""
    embeds, mask = make_embeds(), make_mask()
    assert torch.equal(run(name, 0.0, embeds, mask), embeds)


def test_empty_mask_returns_input():
    """Nothing selected: the input comes back unchanged."""
    embeds = make_embeds()
    out = run("gaussian_first_n", 5.0, embeds, torch.zeros(B, T, dtype=torch.bool))
    assert torch.equal(out, embeds)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussian_noise_scales_with_sigma(name):
    """The added noise has roughly the requested standard deviation (all dims by default)."""
    embeds = torch.zeros(4, 64, 32)
    mask = torch.ones(4, 64, dtype=torch.bool)
    params = {"k": 32} if name == "gaussian_topk" else {}
    noise = run(name, 2.0, embeds, mask, **params)
    assert noise.std().item() == pytest.approx(2.0, rel=0.05)


def test_zero_first_n_zeroes_exactly_the_first_k_dims():
    """zero_first_n with strength 4 zeroes dims 0..3 of masked tokens and nothing else."""
    embeds, mask = make_embeds(), make_mask()
    out = run("zero_first_n", 4, embeds, mask)
    assert torch.equal(out[mask][:, :4], torch.zeros(int(mask.sum()), 4))
    assert torch.equal(out[mask][:, 4:], embeds[mask][:, 4:])
    assert torch.equal(out[~mask], embeds[~mask])


def test_zero_first_n_rounds_strength():
    """Strength is a count of dims: 2.6 rounds to 3."""
    embeds, mask = make_embeds(), make_mask()
    out = run("zero_first_n", 2.6, embeds, mask)
    assert (out[mask][:, :3] == 0).all()
    assert torch.equal(out[mask][:, 3:], embeds[mask][:, 3:])


def test_zero_topk_zeroes_largest_magnitude_dims():
    """zero_topk k=3 zeroes the 3 largest-|x| dims of each masked token."""
    embeds, mask = make_embeds(), make_mask()
    out = run("zero_topk", 3, embeds, mask)
    for b, t in mask.nonzero().tolist():
        top = set(embeds[b, t].abs().topk(3).indices.tolist())
        zeroed = set((out[b, t] == 0).nonzero().squeeze(-1).tolist())
        assert zeroed == top
        keep = [d for d in range(D) if d not in top]
        assert torch.equal(out[b, t, keep], embeds[b, t, keep])


def test_flip_topk_flips_the_k_largest_magnitude_dims():
    """flip_topk k=5 negates exactly each masked token's 5 largest-|x| dims."""
    embeds, mask = make_embeds(), make_mask()
    out = run("flip_topk", 5, embeds, mask)
    for b, t in mask.nonzero().tolist():
        top = embeds[b, t].abs().topk(5).indices
        expected = embeds[b, t].clone()
        expected[top] = -expected[top]
        assert torch.equal(out[b, t], expected)


def test_flip_first_n_flips_first_dims():
    """flip_first_n k=6 negates dims 0..5 of masked tokens."""
    embeds, mask = make_embeds(), make_mask()
    out = run("flip_first_n", 6, embeds, mask)
    assert torch.equal(out[mask][:, :6], -embeds[mask][:, :6])
    assert torch.equal(out[mask][:, 6:], embeds[mask][:, 6:])


def test_gaussian_first_n_changes_only_first_n_dims():
    """gaussian_first_n with n_dims=5 perturbs dims 0..4 only, all of them."""
    embeds, mask = make_embeds(), make_mask()
    out = run("gaussian_first_n", 1.0, embeds, mask, n_dims=5)
    assert (out[mask][:, :5] != embeds[mask][:, :5]).all()
    assert torch.equal(out[mask][:, 5:], embeds[mask][:, 5:])


def test_gaussian_random_n_changes_same_n_dims_for_all_tokens():
    """gaussian_random_n with n_dims=4 perturbs the same 4 randomly drawn dims of every masked token."""
    embeds, mask = make_embeds(), make_mask()
    out = run("gaussian_random_n", 1.0, embeds, mask, n_dims=4)
    changed = out[mask] != embeds[mask]  # [N, D]
    assert (changed.sum(-1) == 4).all()
    assert (changed == changed[0]).all()
    other = run("gaussian_random_n", 1.0, embeds, mask, seed=999, n_dims=4)
    assert not torch.equal((other[mask] != embeds[mask])[0], changed[0]), "another seed draws other dims"


def test_gaussian_topk_changes_only_topk_dims():
    """gaussian_topk k=3 perturbs exactly each masked token's 3 largest-|x| dims."""
    embeds, mask = make_embeds(), make_mask()
    out = run("gaussian_topk", 1.0, embeds, mask, k=3)
    for b, t in mask.nonzero().tolist():
        top = set(embeds[b, t].abs().topk(3).indices.tolist())
        changed = set((out[b, t] != embeds[b, t]).nonzero().squeeze(-1).tolist())
        assert changed == top


@pytest.mark.parametrize("name", PERMUTATIONS)
def test_full_permutation_preserves_multiset_of_masked_rows(name):
    """Strength 1: each masked row becomes another masked row of the same batch row (a permutation)."""
    embeds, mask = make_embeds(), make_mask()
    out = run(name, 1.0, embeds, mask)
    for b in range(B):
        before = sorted(tuple(v) for v in embeds[b, mask[b]].tolist())
        after = sorted(tuple(v) for v in out[b, mask[b]].tolist())
        assert before == after
        assert torch.equal(out[b, ~mask[b]], embeds[b, ~mask[b]])


def test_reverse_mirrors_selected_positions():
    """reverse on positions [1,2,4] maps them to [4,2,1]; other positions untouched."""
    embeds = make_embeds()[:1]
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, [1, 2, 4]] = True
    out = run("reverse", 1.0, embeds, mask)
    assert torch.equal(out[0, 1], embeds[0, 4])
    assert torch.equal(out[0, 2], embeds[0, 2])
    assert torch.equal(out[0, 4], embeds[0, 1])
    others = [0, 3, 5, 6]
    assert torch.equal(out[0, others], embeds[0, others])


def test_reverse_half_strength_interpolates():
    """reverse with s=0.5 gives the midpoint between a token and its mirror."""
    embeds = make_embeds()[:1]
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, [0, 3]] = True
    out = run("reverse", 0.5, embeds, mask)
    torch.testing.assert_close(out[0, 0], 0.5 * embeds[0, 0] + 0.5 * embeds[0, 3])


def test_permutation_with_single_selected_token_is_identity():
    """A row with fewer than two selected tokens has nothing to permute."""
    embeds = make_embeds()[:1]
    mask = torch.zeros(1, T, dtype=torch.bool)
    mask[0, 3] = True
    assert torch.equal(run("shuffle", 1.0, embeds, mask), embeds)


# --------------------------------------------------------------------------------- CorruptionSpec


def test_unknown_corruption_lists_known_names():
    """An unknown name raises CorruptionError naming the known corruptions."""
    with pytest.raises(CorruptionError) as info:
        CorruptionSpec("no_such_thing", 1.0).validate()
    message = str(info.value)
    assert "no_such_thing" in message
    for name in BUILTIN:
        assert name in message
    with pytest.raises(CorruptionError):
        get_corruption("no_such_thing")


@pytest.mark.parametrize(
    "name,strength",
    [
        ("gaussian_first_n", -0.1),
        ("gaussian_first_n", float("nan")),
        ("gaussian_first_n", float("inf")),
        ("zero_first_n", -1),
        ("shuffle", 1.5),
        ("reverse", -0.01),
        ("gaussian_first_n", "1.0"),
    ],
)
def test_invalid_strength_rejected(name, strength):
    """Negative, NaN, infinite, out-of-range or non-numeric strengths raise CorruptionError."""
    with pytest.raises(CorruptionError, match="out of range"):
        CorruptionSpec(name, strength).validate(hidden_size=D)


@pytest.mark.parametrize("name", ["zero_topk", "zero_first_n", "flip_topk", "flip_first_n"])
def test_dimension_count_above_hidden_size_rejected(name):
    """k larger than the hidden size is refused, both in validate() and when applied."""
    CorruptionSpec(name, D).validate(hidden_size=D)  # the boundary is allowed
    with pytest.raises(CorruptionError, match=rf"\[0, {D}\]"):
        CorruptionSpec(name, D + 1).validate(hidden_size=D)
    with pytest.raises(CorruptionError):
        run(name, D + 1, make_embeds(), make_mask())


def test_unknown_param_rejected():
    """A parameter the corruption does not take raises CorruptionError naming the accepted ones."""
    with pytest.raises(CorruptionError, match="bogus") as info:
        CorruptionSpec("gaussian_first_n", 1.0, {"bogus": 3}).validate()
    assert "n_dims" in str(info.value)
    with pytest.raises(CorruptionError, match="none"):
        CorruptionSpec("zero_first_n", 1.0, {"n_dims": 3}).validate()


def test_known_param_accepted():
    """Declared keyword-only parameters are accepted."""
    corruption = CorruptionSpec("gaussian_topk", 0.3, {"k": 4}).validate()
    assert corruption.name == "gaussian_topk"
    assert corruption.params == {"k": 64}


def test_spec_dict_round_trip():
    """to_dict/from_dict preserve name, strength and params (through JSON types)."""
    spec = CorruptionSpec("gaussian_random_n", 0.25, {"n_dims": 8})
    data = spec.to_dict()
    assert data == {"name": "gaussian_random_n", "strength": 0.25, "params": {"n_dims": 8}}
    again = CorruptionSpec.from_dict(data)
    assert again == spec
    assert CorruptionSpec.from_dict({"name": "zero_topk", "strength": 3}) == CorruptionSpec("zero_topk", 3.0, {})


def test_spec_to_dict_copies_params():
    """Mutating the dict from to_dict does not change the spec."""
    spec = CorruptionSpec("gaussian_first_n", 1.0, {"n_dims": 2})
    spec.to_dict()["params"]["n_dims"] = 99
    assert spec.params == {"n_dims": 2}


def test_register_corruption_usable_through_spec():
    """A user corruption registered by decorator works via CorruptionSpec; the registry is restored."""
    assert "test_add_constant" not in CORRUPTIONS
    with CORRUPTIONS.override("test_add_constant"):

        @register_corruption("test_add_constant", (0.0, 10.0), "c (constant added)")
        def add_constant(embeds, mask, strength, generator, *, only_first: bool = False):
            new = embeds + strength
            if only_first:
                new[..., 1:] = embeds[..., 1:]
            return torch.where(mask.unsqueeze(-1), new, embeds)

        assert CORRUPTIONS["test_add_constant"].params == {"only_first": False}
        embeds, mask = make_embeds(), make_mask()
        out = run("test_add_constant", 2.0, embeds, mask)
        torch.testing.assert_close(out[mask], embeds[mask] + 2.0)
        assert torch.equal(out[~mask], embeds[~mask])
        out = run("test_add_constant", 2.0, embeds, mask, only_first=True)
        assert torch.equal(out[mask][:, 1:], embeds[mask][:, 1:])
        with pytest.raises(CorruptionError, match="out of range"):
            CorruptionSpec("test_add_constant", 11.0).validate()
    assert sorted(CORRUPTIONS) == BUILTIN


def test_corruptions_work_in_bfloat16():
    """The corruption keeps the dtype of the embeddings (bf16 models)."""
    embeds, mask = make_embeds().to(torch.bfloat16), make_mask()
    out = run("gaussian_first_n", 0.5, embeds, mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[~mask], embeds[~mask])



@pytest.mark.parametrize(
    ("params", "message"),
    [({"n_dims": "abc"}, "non-negative integer"), ({"n_dims": -2}, "non-negative integer"), ({"n_dims": 2.5}, "non-negative integer"),
     ({"n_dims": True}, "non-negative integer")],
)
def test_parameter_types_are_checked(params, message):
    """Parameters get the type their default implies; bad values fail at validation, not deep inside torch."""
    with pytest.raises(CorruptionError, match=message):
        CorruptionSpec("gaussian_first_n", 1.0, params).validate()
    with pytest.raises(CorruptionError, match="non-negative integer"):
        CorruptionSpec("gaussian_topk", 1.0, {"k": None}).validate()
    CorruptionSpec("gaussian_first_n", 1.0, {"n_dims": None}).validate()


@pytest.mark.parametrize("strength", ["1.0", None, True, float("inf")])
def test_from_dict_rejects_non_numeric_strength(strength):
    """A strength in guard.json that is not a finite number is refused when read."""
    with pytest.raises(CorruptionError, match="finite number"):
        CorruptionSpec.from_dict({"name": "gaussian_first_n", "strength": strength})


def test_registering_an_existing_name_needs_replace():
    """A built-in cannot be overridden by accident; replace=True makes it explicit."""
    original = CORRUPTIONS["shuffle"]
    with pytest.raises(CorruptionError, match="registered already"):
        register_corruption("shuffle", (0.0, 1.0), "s")(lambda e, m, s, g: e)
    with CORRUPTIONS.override("shuffle"):
        register_corruption("shuffle", (0.0, 1.0), "s", replace=True)(lambda e, m, s, g: e)
        assert CORRUPTIONS["shuffle"] is not original
    assert CORRUPTIONS["shuffle"] is original


def test_specs_are_hashable_and_equal_by_value():
    """Specs work as set members and cache keys."""
    a = CorruptionSpec("gaussian_topk", 0.5, {"k": 8})
    assert {a, CorruptionSpec("gaussian_topk", 0.5, {"k": 8})} == {a}
    assert hash(a) != hash(CorruptionSpec("gaussian_topk", 0.5, {"k": 9}))
