"""Integration fixtures: the real SmolLM2-135M-Instruct, converted once into the user cache."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from eco_unlearn import load_model
from eco_unlearn.demo import keyword_demo_guard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_engine import START_TIMEOUT, Engine, EngineUnavailable, unavailable_reason  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ENGINE = pytest.StashKey[Engine]()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``last`` run after every other test of the session (``test_vllm_engine.py``'s check that
    the gateway recovers once the killed engine is back: the engine boots again meanwhile)."""
    last = [item for item in items if item.get_closest_marker("last")]
    items[:] = [item for item in items if not item.get_closest_marker("last")] + last


def pytest_collection_finish(session):
    """Launch the real vLLM engine as soon as the session is known to run vLLM tests: it boots (a minute or
    more, mostly importing vLLM in three processes) while the tests before them run, instead of in front of them."""
    wanted = not session.config.option.collectonly and any(item.get_closest_marker("vllm") for item in session.items)
    if wanted and unavailable_reason() is None:
        _launch_engine(session.config)


def _launch_engine(config) -> Engine:
    from eco_unlearn.serve.server import free_port

    log = Path(tempfile.mkdtemp(prefix="eco-unlearn-vllm-")) / "engine.log"
    engine = Engine(free_port(), log, ("--enforce-eager",))  # eager: this CPU build compiles on every start
    engine.launch()
    config.stash[ENGINE] = engine
    return engine


def pytest_sessionfinish(session):
    engine = session.config.stash.get(ENGINE, None)
    if engine is not None:
        engine.stop()


@pytest.fixture(scope="session")
def engine(request):
    """The real vLLM engine launched at collection (``scripts/vllm-server -- --enforce-eager``), once it answers;
    skips, saying why, where it cannot start (no vLLM virtualenv: ``scripts/vllm-server --install-only``;
    ECO_UNLEARN_VLLM=0)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    engine = request.config.stash.get(ENGINE, None) or _launch_engine(request.config)
    try:
        engine.wait(START_TIMEOUT)
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    return engine


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
    """Run the installed ``eco-unlearn`` console script in a subprocess; returns CompletedProcess. The
    process imports this checkout's ``eco_unlearn`` (the virtualenv's editable install may be another's)."""
    exe = Path(sys.executable).with_name("eco-unlearn")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": path}
        return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)

    return run


@pytest.fixture(scope="session")
def cli_main():
    """Run the console script's entry point, ``eco_unlearn.cli.main``, in this process; returns
    CompletedProcess like ``cli``. For checks of one command's bad input: a subprocess each would only
    import torch again (every command group keeps one check through ``cli``, a real process)."""
    from eco_unlearn.cli import main
    from eco_unlearn.cli.console import err, out

    out.width = err.width = 200  # as COLUMNS=200 gives ``cli``'s processes (a table's cells are not cut short)

    def run(*args: str) -> subprocess.CompletedProcess:
        stdout, stderr, argv = io.StringIO(), io.StringIO(), sys.argv
        sys.argv = ["eco-unlearn", *args]
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            sys.argv = argv
        plain = [re.sub(r"\x1b\[[0-9;]*m", "", s.getvalue()) for s in (stdout, stderr)]
        return subprocess.CompletedProcess(["eco-unlearn", *args], code, *plain)

    return run


@pytest.fixture(scope="session")
def demo_run(cli, tmp_path_factory):
    """``eco-unlearn demo`` run once, as the README's first command does: the fitted guard lands in the
    cache (for ``generate --guard demo``) and its report in a temporary file. ``--budget 4`` (the range's
    ends and two bisection steps; the default 30 stops after about 10) keeps the search to a minute here."""
    report = tmp_path_factory.mktemp("demo") / "report.json"
    result = cli("demo", "--report", str(report), "-n", "8", "--budget", "4", timeout=1200)
    assert result.returncode == 0, result.stderr
    return result, json.loads(report.read_text())


@pytest.fixture(scope="session")
def tofu_dir():
    """The shared TOFU data (``$ECO_UNLEARN_DATA`` or ../shared/data next to the repository)."""
    root = Path(os.environ.get("ECO_UNLEARN_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (root / "tofu" / "forget01.jsonl").is_file():
        pytest.skip(f"TOFU data not found under {root} (set ECO_UNLEARN_DATA)")
    return root / "tofu"
