"""Every exception eco-unlearn raises on purpose. Each message names the problem and what to do about it.

Two families: ``InputError`` is the caller's input, model or artifact (the CLI exits with code 2), and
``RunFailure`` is something that broke while running (a worker process died; the CLI exits with code 1).
Both derive from ``EcoUnlearnError``, so ``except EcoUnlearnError`` catches everything raised here.
"""

__all__ = [
    "CalibrationError", "ClassifierError", "CorruptionError", "DatasetError", "EcoUnlearnError", "FinetuneError", "GuardError",
    "IncompatibleGuardError", "InputError", "ItemsError", "MetricError", "MissingDependencyError", "ModelError",
    "ObjectiveError", "ParallelError", "PromptError", "RegistryError", "RunFailure", "SearchError",
    "ServeConfigError", "ServerError", "TofuDataError",
]


class EcoUnlearnError(Exception):
    """Base class of every exception raised here (not of bugs in eco-unlearn)."""


class InputError(EcoUnlearnError, ValueError):
    """A problem with the caller's input, model or artifact: fix the input and run again (exit code 2)."""


class RunFailure(EcoUnlearnError, RuntimeError):
    """Something failed while running, with valid input: a crashed worker, say (exit code 1)."""


class ModelError(InputError):
    """A model name or path that cannot be resolved or loaded."""


class MissingDependencyError(InputError):
    """An optional dependency that is not installed: the message names the pip extra that installs it."""


class GuardError(InputError):
    """A guard artifact or target definition that is missing, corrupt or invalid."""


class IncompatibleGuardError(GuardError):
    """A guard built for another model than the one it is being attached to."""


class PromptError(InputError):
    """An empty, malformed or over-long prompt."""


class CorruptionError(InputError):
    """An unknown corruption or a strength outside its valid range."""


class RegistryError(InputError):
    """An unknown name looked up in a registry, or a name registered twice."""


class ClassifierError(InputError):
    """A classifier that cannot be trained or built from what it was given (e.g. no training prompts)."""


class ItemsError(InputError):
    """A prompt file or list is missing, empty or malformed."""


class CalibrationError(InputError):
    """The held-out data cannot support the requested false-positive bound."""


class ObjectiveError(InputError):
    """An objective cannot be built or evaluated from what it was given."""


class SearchError(InputError):
    """Bad search settings (range, budget)."""


class FinetuneError(InputError):
    """Fine-tuning cannot run with these inputs."""


class MetricError(InputError):
    """A metric cannot be computed from what it was given (an answer without tokens, no values)."""


class DatasetError(InputError):
    """A benchmark dataset (MMLU, RWKU, WMDP-format files, ...) is missing or malformed."""


class TofuDataError(DatasetError):
    """A TOFU split is missing or malformed."""


class ServeConfigError(InputError):
    """Bad settings of the server (``ServeConfig``, the backend) or of its load benchmark."""


class ParallelError(RunFailure):
    """A worker process died without reporting a result, or raised an exception that cannot be sent back."""


class ServerError(RunFailure):
    """The server did not start, or a part of it was used before it started."""
