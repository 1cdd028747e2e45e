"""Packaging: ``pip install eco-unlearn`` stays light, the server and the plots are extras, and a missing
extra is one error that names it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from eco_unlearn.extras import require
from eco_unlearn.bench.saving import png_figure
from eco_unlearn.errors import InputError, MissingDependencyError
from eco_unlearn.models import resolve_embedded

ROOT = Path(__file__).resolve().parents[2]
SERVE = {"fastapi", "uvicorn", "httpx"}
OPTIONAL = SERVE | {"starlette", "matplotlib"}
LIBRARY = ("eco_unlearn", "eco_unlearn.runtime", "eco_unlearn.fitting", "eco_unlearn.classifier", "eco_unlearn.data")


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's eco_unlearn."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower() for requirement in requirements}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_library_imports_leave_out_the_extras():
    """The library's packages import no server, plotting or CLI module; the CLI imports no server or plotting."""
    code = f"""
import importlib, json, sys
for name in {LIBRARY!r}:
    importlib.import_module(name)
library = sorted({{m.split(".")[0] for m in sys.modules}})
import eco_unlearn.cli
cli = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"library": library, "cli": cli}}))
"""
    run = _python(code)
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout.splitlines()[-1])
    assert set(loaded["library"]) & (OPTIONAL | {"typer", "rich"}) == set()
    assert set(loaded["cli"]) & OPTIONAL == set()
    assert {"typer", "rich"} <= set(loaded["cli"])  # the check above did look at the CLI


def test_base_dependencies_leave_server_and_plots_to_extras():
    project = _project()
    base = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert base & (SERVE | {"matplotlib"}) == set()
    assert {"torch", "transformers", "typer", "rich", "rouge-score"} <= base
    assert _names(extras["serve"]) == SERVE
    assert "matplotlib" in _names(extras["bench"]) and "eco-unlearn[serve]" in extras["bench"]
    assert "gguf" in _names(extras["gguf"])
    assert "lm-eval" in _names(extras["lmeval"]) and "datasets" in _names(extras["hub"])
    assert {"pytest", "httpx"} <= _names(extras["test"])
    (everything,) = extras["all"]
    assert set(re.fullmatch(r"eco-unlearn\[(.+)\]", everything).group(1).split(",")) == set(extras) - {"all", "test"}


def test_bootstrap_installs_what_the_readme_commands_need():
    """The demo needs gguf (the embedded model), the tests need serve, bench, lmeval and test."""
    (extras,) = re.findall(r'-e "\$root\[([a-z,]+)\]"', (ROOT / "scripts" / "bootstrap").read_text())
    assert set(extras.split(",")) == {"gguf", "serve", "bench", "lmeval", "test"}
    assert set(extras.split(",")) <= set(_project()["optional-dependencies"])


def test_require_returns_the_module_or_names_the_extra():
    assert require("json", "bench", "plotting") is json
    with pytest.raises(MissingDependencyError) as caught:
        require("eco_unlearn_no_such_module", "bench", "plotting")
    assert isinstance(caught.value, InputError)
    message = str(caught.value)
    assert message.startswith("plotting needs the bench extra: pip install 'eco-unlearn[bench]'")
    assert "eco_unlearn_no_such_module" in message and "\n" not in message


def test_plot_without_matplotlib_names_the_bench_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules: the import fails
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'eco-unlearn[bench]'")):
        with png_figure(tmp_path / "plot.png", (4, 3)):
            pass
    assert not (tmp_path / "plot.png").exists()


def test_embedded_model_conversion_without_gguf_names_the_gguf_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'eco-unlearn[gguf]'")):
        resolve_embedded("smollm2", cache=tmp_path)


def test_serve_without_the_extra_is_one_error_line():
    """``eco-unlearn serve`` without FastAPI exits with code 2 and one line naming the serve extra."""
    code = """
import sys
sys.modules["fastapi"] = None
sys.argv = ["eco-unlearn", "serve", "--no-audit"]
from eco_unlearn.cli import main
main()
"""
    run = _python(code)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: the server needs the serve extra: pip install 'eco-unlearn[serve]'")
