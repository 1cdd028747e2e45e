"""validation.py: the shared setting checks accept what they should, refuse bools as integers and NaN or
infinity as numbers, honour open and closed bounds, and word their messages one way."""

import math

import pytest

from eco_unlearn.errors import FinetuneError, InputError, PromptError
from eco_unlearn.validation import integer, is_integer, is_number, number, one_of


@pytest.mark.parametrize("value", [0, 1, -3, 2**70])
def test_is_integer_accepts_ints(value):
    assert is_integer(value)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, [1]])
def test_is_integer_refuses_bools_and_non_ints(value):
    assert not is_integer(value)


@pytest.mark.parametrize("value", [0, -2, 0.5, 1e300])
def test_is_number_accepts_finite_numbers(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "0.5", None])
def test_is_number_refuses_nan_infinity_bools_and_strings(value):
    assert not is_number(value)


def test_integer_returns_the_value_it_accepts():
    assert integer(3, "n", minimum=1) == 3
    assert integer(1, "n", minimum=1, maximum=1) == 1
    assert integer(-5, "n") == -5


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (0, {"minimum": 1}, "n must be a positive integer, not 0"),
        (True, {"minimum": 1}, "n must be a positive integer, not True"),
        (1.0, {"minimum": 1}, "n must be a positive integer, not 1.0"),
        (-1, {"minimum": 0}, "n must be a non-negative integer, not -1"),
        (11, {"minimum": 2, "maximum": 10}, "n must be an integer from 2 to 10, not 11"),
        (1, {"minimum": 2}, "n must be an integer >= 2, not 1"),
        (6, {"maximum": 5}, "n must be an integer <= 5, not 6"),
        ("3", {}, "n must be an integer, not '3'"),
    ],
)
def test_integer_messages(value, bounds, message):
    with pytest.raises(InputError) as info:
        integer(value, "n", **bounds)
    assert str(info.value) == message


def test_integer_raises_the_callers_class_and_description():
    with pytest.raises(PromptError, match=r"^batch_size must be a positive integer, not 0$"):
        integer(0, "batch_size", minimum=1, error=PromptError)
    with pytest.raises(InputError, match=r"^the seed must be a 64-bit signed integer, not 9223372036854775808$"):
        integer(2**63, "the seed", minimum=-(2**63), maximum=2**63 - 1, what="a 64-bit signed integer")


def test_number_bounds_open_and_closed():
    assert number(0, "x", low=0) == 0
    assert number(1, "x", low=0, high=1) == 1
    assert number(0.5, "x", low=0, high=1, low_open=True, high_open=True) == 0.5
    for value, kwargs in [(0, {"low_open": True}), (1, {"high_open": True}), (-0.1, {}), (1.1, {})]:
        with pytest.raises(InputError):
            number(value, "x", low=0, high=1, **kwargs)


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (0, {"low": 0, "high": 1, "low_open": True}, "x must lie in (0, 1], not 0"),
        (1, {"low": 0, "high": 1, "high_open": True}, "x must lie in [0, 1), not 1"),
        (2, {"low": 0, "high": 1, "low_open": True, "high_open": True}, "x must lie in (0, 1), not 2"),
        (-1, {"low": 0, "high": 1}, "x must lie in [0, 1], not -1"),
        (0, {"low": 0, "low_open": True}, "x must be positive, not 0"),
        (2, {"low": 2, "low_open": True}, "x must be > 2, not 2"),
        (-1, {"low": 0}, "x must be >= 0, not -1"),
        (5, {"high": 5, "high_open": True}, "x must be < 5, not 5"),
        (6, {"high": 5}, "x must be <= 5, not 6"),
        (math.nan, {}, "x must be a finite number, not nan"),
        (math.inf, {"low": 0}, "x must be >= 0, not inf"),
        (True, {"low": 0}, "x must be >= 0, not True"),
        ("1", {"low": 0}, "x must be >= 0, not '1'"),
    ],
)
def test_number_messages(value, bounds, message):
    with pytest.raises(InputError) as info:
        number(value, "x", **bounds)
    assert str(info.value) == message


def test_number_raises_the_callers_class():
    with pytest.raises(FinetuneError, match=r"^learning_rate must be positive, not 0$"):
        number(0, "learning_rate", low=0, low_open=True, error=FinetuneError)


def test_one_of():
    assert one_of("left", "truncation", ("error", "left")) == "left"
    with pytest.raises(InputError) as info:
        one_of("right", "truncation", ("error", "left"))
    assert str(info.value) == "truncation must be 'error' or 'left', not 'right'"
    with pytest.raises(PromptError) as info:
        one_of("x", "dtype", ["auto", "float32", "bfloat16"], error=PromptError)
    assert str(info.value) == "dtype must be 'auto', 'float32' or 'bfloat16', not 'x'"
    with pytest.raises(InputError) as info:
        one_of("b", "mode", iter(["a"]))
    assert str(info.value) == "mode must be 'a', not 'b'"
