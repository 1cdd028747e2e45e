"""Integration fixtures: the real SmolLM2-135M-Instruct, converted once into the user cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eco_unlearn import load_model
from eco_unlearn.demo import demo_guard

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def smollm2():
    model, tokenizer = load_model("smollm2")
    return model, tokenizer


@pytest.fixture(scope="session")
def demo(smollm2):
    model, _ = smollm2
    return demo_guard(model)


@pytest.fixture(scope="session")
def cli():
    """Run the installed ``eco-unlearn`` console script in a subprocess; returns CompletedProcess."""
    exe = Path(sys.executable).with_name("eco-unlearn")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)

    return run
