"""The exception hierarchy: every class lives in errors.py, is exported from the package root, and belongs
to exactly one family (InputError, exit code 2, or RunFailure, exit code 1), which the CLI reports."""

import inspect
import re
from pathlib import Path

import pytest
import typer

import eco_unlearn
from eco_unlearn import errors
from eco_unlearn.cli.console import errors as cli_errors
from eco_unlearn.errors import EcoUnlearnError, InputError, ParallelError, RunFailure

PACKAGE = Path(eco_unlearn.__file__).parent
CLASSES = [getattr(errors, name) for name in errors.__all__]
# class NAME(BASES): where a base is an exception (its name ends in Error, Exception or Failure)
EXCEPTION_CLASS = re.compile(r"^\s*class\s+(\w+)\s*\(([^)]*\b\w*(?:Error|Exception|Failure)\b[^)]*)\)", re.M)


def test_errors_all_lists_every_class_defined_there():
    defined = {name for name, value in vars(errors).items() if inspect.isclass(value) and value.__module__ == errors.__name__}
    assert defined == set(errors.__all__)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_exported_from_the_package_root(cls):
    assert cls.__name__ in eco_unlearn.__all__
    assert getattr(eco_unlearn, cls.__name__) is cls


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not EcoUnlearnError], ids=lambda c: c.__name__)
def test_every_error_belongs_to_exactly_one_family(cls):
    assert issubclass(cls, EcoUnlearnError)
    assert issubclass(cls, InputError) != issubclass(cls, RunFailure)


def test_the_families_keep_the_builtin_bases_callers_catch():
    """InputError stays a ValueError (``except ValueError`` keeps catching bad input); a RunFailure is a
    RuntimeError and deliberately not a ValueError."""
    assert issubclass(InputError, ValueError) and not issubclass(InputError, RuntimeError)
    assert issubclass(RunFailure, RuntimeError) and not issubclass(RunFailure, ValueError)
    assert issubclass(ParallelError, RunFailure)


def test_no_exception_class_is_defined_outside_errors_py():
    """Only the server's HTTP error (APIError and its subclasses, which are responses, not library errors)
    may live elsewhere."""
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "errors.py":
            continue
        for name, bases in EXCEPTION_CLASS.findall(path.read_text(encoding="utf-8")):
            http_error = (relative == "serve/errors.py" and name == "APIError") or re.search(r"\bAPIError\b", bases)
            if not http_error:
                stray.append(f"{relative}: class {name}({bases})")
    assert stray == []


def _exit_code(exc: BaseException) -> int:
    with pytest.raises(typer.Exit) as info:
        with cli_errors():
            raise exc
    return info.value.exit_code


def test_cli_exits_1_for_a_crashed_worker_and_2_for_bad_input(capsys):
    assert _exit_code(ParallelError("the target worker died (exit code -9) without a result")) == 1
    assert _exit_code(RunFailure("cannot read peak RSS")) == 1
    assert _exit_code(InputError("n must be a positive integer, not 0")) == 2
    assert _exit_code(errors.GuardError("no guard folder at x")) == 2
    assert "the target worker died" in capsys.readouterr().err


def test_cli_leaves_other_exceptions_alone():
    """A bug is not a library error: it keeps its traceback."""
    with pytest.raises(KeyError):
        with cli_errors():
            raise KeyError("bug")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mode": "bogus"}, "unknown classifier mode"), ({"C": 0}, "C must be positive"),
     ({"validation_fraction": 1.0}, r"validation_fraction must lie in \(0, 1\)")],
)
def test_encoder_classifier_settings_are_classifier_errors(kwargs, message):
    """Checked before any backbone is loaded; a classifier's settings are not a guard artifact."""
    with pytest.raises(errors.ClassifierError, match=message):
        eco_unlearn.EncoderClassifier(**kwargs)


def test_server_settings_raise_serve_config_error():
    from eco_unlearn.serve import ServeConfig

    with pytest.raises(errors.ServeConfigError, match="on_classifier_error must be 'refuse' or 'corrupt', not 'x'"):
        ServeConfig(on_classifier_error="x")
    with pytest.raises(errors.ServeConfigError, match="max_batch must be a positive integer, not True"):
        ServeConfig(max_batch=True)
    with pytest.raises(errors.ServeConfigError, match="batch_wait_ms must be >= 0"):
        ServeConfig(batch_wait_ms=-1)
