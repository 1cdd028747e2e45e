"""Old import paths of eco-unlearn 0.1 keep working for one release, each with a DeprecationWarning."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import eco_unlearn
from eco_unlearn.deprecated import MOVED_MODULES, MOVED_NAMES


def test_a_moved_module_is_the_new_one_under_its_old_name():
    # a fresh interpreter, where none of the old names has been imported yet
    code = (
        "import importlib, json, warnings\n"
        f"moved = {MOVED_MODULES!r}\n"
        "seen = {}\n"
        "for old, new in moved.items():\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    seen[old] = [module is importlib.import_module(new), [str(w.message) for w in caught\n"
        "                 if issubclass(w.category, DeprecationWarning)]]\n"
        "print(json.dumps(seen))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    for old, new in MOVED_MODULES.items():
        same, messages = seen[old]
        assert same, old
        assert any(m.startswith(f"{old} moved to {new}") for m in messages), (old, messages)


@pytest.mark.parametrize("name", sorted(MOVED_NAMES))
def test_a_name_the_root_no_longer_exports_is_served_with_a_warning(name):
    eco_unlearn.__dict__.pop(name, None)  # bound by an earlier access
    with pytest.warns(DeprecationWarning, match=rf"eco_unlearn\.{name} moved to {MOVED_NAMES[name]}\.{name}"):
        value = getattr(eco_unlearn, name)
    assert value is getattr(importlib.import_module(MOVED_NAMES[name]), name)
    assert name not in eco_unlearn.__all__


def test_an_unknown_root_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        eco_unlearn.no_such_thing  # noqa: B018


def test_the_root_exports_what_a_user_needs_and_every_error():
    from eco_unlearn import errors

    assert set(errors.__all__) <= set(eco_unlearn.__all__)
    for name in ("load_model", "fit_guard", "FitConfig", "Guard", "GuardedModel", "Target", "CorruptionSpec",
                 "TokenSelection", "KeywordClassifier", "fingerprint"):
        assert name in eco_unlearn.__all__ and hasattr(eco_unlearn, name)
    assert len(eco_unlearn.__all__) - len(errors.__all__) <= 16
