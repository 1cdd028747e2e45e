"""Load benchmarks: the server on loopback, guarded against unguarded against unbatched (``benchmark.py``),
and ordinary clients alone against under hostile clients' abuse (``abuse.py``)."""

from .abuse import AbuseBenchConfig, AbuseBenchReport, AbuseBenchRow, plot_abuse, run_abuse_bench
from .benchmark import MODES, ServeBenchConfig, ServeBenchReport, ServeBenchRow, run_serve_bench

__all__ = ["MODES", "AbuseBenchConfig", "AbuseBenchReport", "AbuseBenchRow", "ServeBenchConfig", "ServeBenchReport",
           "ServeBenchRow", "plot_abuse", "run_abuse_bench", "run_serve_bench"]
