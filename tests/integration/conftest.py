"""Integration fixtures: the real SmolLM2-135M-Instruct, converted once into the user cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eco_unlearn import load_model
from eco_unlearn.demo import keyword_demo_guard

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def smollm2():
    model, tokenizer = load_model("smollm2")
    return model, tokenizer


@pytest.fixture(scope="session")
def demo(smollm2):
    model, _ = smollm2
    return keyword_demo_guard(model)


@pytest.fixture(scope="session")
def cli():
    """Run the installed ``eco-unlearn`` console script in a subprocess; returns CompletedProcess."""
    exe = Path(sys.executable).with_name("eco-unlearn")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)

    return run


@pytest.fixture(scope="session")
def demo_run(cli, tmp_path_factory):
    """``eco-unlearn demo`` run once, as the README's first command does: the fitted guard lands in the
    cache (for ``generate --guard demo``) and its report in a temporary file."""
    report = tmp_path_factory.mktemp("demo") / "report.json"
    result = cli("demo", "--report", str(report), "-n", "24", timeout=1200)
    assert result.returncode == 0, result.stderr
    return result, json.loads(report.read_text())


@pytest.fixture(scope="session")
def tofu_dir():
    """The shared TOFU data (``$ECO_UNLEARN_DATA`` or ../shared/data next to the repository)."""
    root = Path(os.environ.get("ECO_UNLEARN_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (root / "tofu" / "forget01.jsonl").is_file():
        pytest.skip(f"TOFU data not found under {root} (set ECO_UNLEARN_DATA)")
    return root / "tofu"
