"""The ``eco-unlearn`` command line: a thin layer over the library, one module per command group.

``console`` (errors as one red line, progress, loading), ``options`` (options shared by commands),
``render`` (tables from the library's reports); ``generate``, ``fit`` (fit, demo), ``info`` (inspect,
models), ``serve``, ``bench``, ``tofu``; ``app`` puts them together.
"""

from .app import app, main

__all__ = ["app", "main"]
