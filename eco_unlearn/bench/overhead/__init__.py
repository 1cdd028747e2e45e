"""Guard overhead: latency and peak memory of guarded against bare generation, as paired ratios."""

from .benchmark import OverheadConfig, OverheadReport, OverheadRow, run_overhead

__all__ = ["OverheadConfig", "OverheadReport", "OverheadRow", "run_overhead"]
