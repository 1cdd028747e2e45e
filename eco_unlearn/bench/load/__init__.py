"""Load benchmark: the server on loopback, guarded against unguarded against unbatched."""

from .benchmark import MODES, ServeBenchConfig, ServeBenchReport, ServeBenchRow, run_serve_bench

__all__ = ["MODES", "ServeBenchConfig", "ServeBenchReport", "ServeBenchRow", "run_serve_bench"]
