"""TOFU (Maini et al., 2024) with eco-unlearn: data, fine-tuned target and retain models, the published
metrics, an ECO guard fitted from what a user has, and the report."""

from .compare import CompareConfig, CompareReport, run_compare
from .data import PRESETS, TofuDataError, TofuPreset, TofuSplits, load_split, load_splits
from .eco import EcoTofuConfig, fit_tofu_guard, format_items, tofu_fit_config
from .evaluate import TofuEvalConfig, TofuEvaluation, evaluate_tofu, summarise
from .report import check_floors, plot_tradeoff, summary_rows
from .run import PreparedModels, TofuReport, TofuRunConfig, evaluate_model, prepare_models, run_tofu
from .sweep import StrengthSweep, SweepReport, run_tofu_sweep, sweep_strengths

__all__ = [
    "PRESETS",
    "CompareConfig",
    "CompareReport",
    "EcoTofuConfig",
    "PreparedModels",
    "StrengthSweep",
    "SweepReport",
    "TofuDataError",
    "TofuEvalConfig",
    "TofuEvaluation",
    "TofuPreset",
    "TofuReport",
    "TofuRunConfig",
    "TofuSplits",
    "check_floors",
    "evaluate_model",
    "evaluate_tofu",
    "fit_tofu_guard",
    "format_items",
    "load_split",
    "load_splits",
    "plot_tradeoff",
    "run_compare",
    "prepare_models",
    "run_tofu",
    "run_tofu_sweep",
    "summarise",
    "summary_rows",
    "sweep_strengths",
    "tofu_fit_config",
]
