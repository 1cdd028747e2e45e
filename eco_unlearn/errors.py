"""Exceptions raised for bad input. Each message names the problem and what to do about it."""


class EcoUnlearnError(ValueError):
    """Base class: a problem with the caller's input, model or artifact (not a bug in eco-unlearn)."""


class ModelError(EcoUnlearnError):
    """A model name or path that cannot be resolved or loaded."""


class GuardError(EcoUnlearnError):
    """A guard artifact or target definition that is missing, corrupt or invalid."""


class IncompatibleGuardError(GuardError):
    """A guard built for another model than the one it is being attached to."""


class PromptError(EcoUnlearnError):
    """An empty, malformed or over-long prompt."""


class CorruptionError(EcoUnlearnError):
    """An unknown corruption or a strength outside its valid range."""
