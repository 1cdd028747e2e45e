"""Tests of eco_unlearn.registry.Registry, on fresh registries (the project's own are tested with their kinds)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from eco_unlearn.classifier import CLASSIFIERS
from eco_unlearn.errors import (
    CorruptionError, GuardError, InputError, ObjectiveError, RegistryError, SearchError,
)
from eco_unlearn.fitting import OBJECTIVES, SEARCHES
from eco_unlearn.registry import Registry
from eco_unlearn.runtime import CORRUPTIONS, SELECTION_STRATEGIES


def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


@pytest.fixture
def functions() -> Registry:
    registry: Registry = Registry("function")
    registry.register("double", double)
    return registry


# -------------------------------------------------------------------------------------- register


def test_register_directly_returns_the_value(functions):
    assert functions.register("triple", triple) is triple
    assert functions["triple"] is triple and functions.get("triple") is triple


def test_register_as_a_decorator_returns_the_decorated_object(functions):
    @functions.register("square")
    def square(x: int) -> int:
        return x * x

    assert functions.get("square") is square and square(3) == 9


def test_any_value_registers_classes_and_dataclass_factories():
    @dataclass
    class Settings:
        size: int = 1

    factories: Registry[type] = Registry("factory", plural="factories")
    factories.register("settings")(Settings)
    assert factories.get("settings")(size=3) == Settings(3)
    with pytest.raises(RegistryError, match="known factories: settings"):
        factories.get("setings")


def test_a_taken_name_is_refused_unless_replace(functions):
    with pytest.raises(RegistryError, match="a function named 'double' is registered already; pass replace=True"):
        functions.register("double", triple)
    with pytest.raises(RegistryError, match="registered already"):
        functions.register("double")(triple)
    assert functions.get("double") is double
    functions.register("double", triple, replace=True)
    assert functions.get("double") is triple


@pytest.mark.parametrize("name", ["", None, 3, double])
def test_a_name_must_be_a_non_empty_string(functions, name):
    with pytest.raises(RegistryError, match="a function name must be a non-empty string"):
        functions.register(name, triple)
    assert list(functions) == ["double"]


# ------------------------------------------------------------------------------------------- get


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest(functions):
    functions.register("triple", triple)
    with pytest.raises(RegistryError) as info:
        functions.get("tripel")
    assert str(info.value) == "unknown function 'tripel'; known functions: double, triple; did you mean 'triple'?"
    with pytest.raises(RegistryError, match="did you mean 'double'"):
        functions["Double"]  # the suggestion ignores case


def test_unknown_name_without_a_close_match_has_no_suggestion(functions):
    with pytest.raises(RegistryError) as info:
        functions.get("zzz")
    assert str(info.value) == "unknown function 'zzz'; known functions: double"
    with pytest.raises(RegistryError, match="known functions: none"):
        Registry("function").get("double")


@pytest.mark.parametrize("name", [None, 3, ["double"]])
def test_a_name_that_is_not_a_string_is_unknown_not_a_crash(functions, name):
    assert name not in functions
    with pytest.raises(RegistryError, match="unknown function"):
        functions.get(name)


def test_get_with_a_default_returns_it_for_an_unknown_name(functions):
    assert functions.get("zzz", None) is None
    assert functions.get("double", None) is double


def test_errors_are_the_registry_s_own_input_error(functions):
    class ToolError(InputError):
        pass

    tools: Registry = Registry("tool", error=ToolError)
    tools.register("hammer", object())
    with pytest.raises(ToolError, match="unknown tool 'saw'"):
        tools.get("saw")
    with pytest.raises(ToolError, match="a tool named 'hammer'"):
        tools.register("hammer", object())
    with pytest.raises(InputError):
        functions.get("zzz")  # RegistryError by default, an InputError too


# --------------------------------------------------------------------------------------- Mapping


def test_a_registry_is_a_read_only_mapping(functions):
    functions.register("triple", triple)
    assert isinstance(functions, Mapping)
    assert len(functions) == 2 and "double" in functions and "half" not in functions
    assert list(functions) == ["double", "triple"]  # registration order
    assert dict(functions.items()) == {"double": double, "triple": triple}
    assert functions == {"double": double, "triple": triple}
    assert list(functions.values()) == [double, triple]
    with pytest.raises(TypeError):
        functions["half"] = double  # type: ignore[index]
    assert not hasattr(functions, "pop")


def test_names_are_sorted_and_repr_shows_them():
    registry: Registry = Registry("letter")
    for name in ("b", "c", "a"):
        registry.register(name, name.upper())
    assert registry.names() == ["a", "b", "c"] and list(registry) == ["b", "c", "a"]
    assert repr(registry) == "Registry('letter', ['a', 'b', 'c'])"


# -------------------------------------------------------------------------------------- override


def test_override_replaces_an_entry_and_restores_it(functions):
    with functions.override("double", triple) as value:
        assert value is triple and functions.get("double") is triple
    assert functions.get("double") is double


def test_override_adds_a_new_entry_and_removes_it(functions):
    with functions.override("triple", triple):
        assert functions.get("triple") is triple and len(functions) == 2
    assert "triple" not in functions and list(functions) == ["double"]


def test_override_restores_even_when_the_block_raises(functions):
    with pytest.raises(KeyError):
        with functions.override("double", triple), functions.override("triple", triple):
            raise KeyError("boom")
    assert functions.get("double") is double and "triple" not in functions


def test_override_without_a_value_undoes_what_the_block_registers(functions):
    with functions.override("triple"):
        assert "triple" not in functions
        functions.register("triple", triple)
        assert functions.get("triple") is triple
    assert "triple" not in functions
    with functions.override("double"):
        functions.register("double", triple, replace=True)
    assert functions.get("double") is double


def test_overrides_nest(functions):
    with functions.override("double", triple):
        with functions.override("double", abs):
            assert functions.get("double") is abs
        assert functions.get("double") is triple
    assert functions.get("double") is double


# ----------------------------------------------------------------------- the project's registries


@pytest.mark.parametrize(
    ("registry", "error", "unknown"),
    [
        (CORRUPTIONS, CorruptionError, "unknown corruption 'gausian_topk'"),
        (OBJECTIVES, ObjectiveError, "unknown objective 'answer_recal'"),
        (CLASSIFIERS, GuardError, "unknown classifier kind 'keywords'"),
        (SEARCHES, SearchError, "unknown search 'bisect'"),
        (SELECTION_STRATEGIES, GuardError, "unknown token selection 'entity'"),
    ],
)
def test_every_project_registry_is_a_registry_with_its_own_error(registry, error, unknown):
    assert isinstance(registry, Registry) and registry.error is error
    name = unknown.split("'")[1]
    with pytest.raises(error, match=f"^{unknown}; known .*; did you mean '"):
        registry.get(name)
