"""Training that changes weights, for benchmarks only: supervised fine-tuning of target and retain models,
and the gradient unlearning baselines ECO is compared with. The guard itself never trains the LM."""

from .methods import METHODS, UnlearnMethod
from .sft import FinetuneConfig, FinetuneResult, encode_example, finetune
from .unlearn import UnlearnConfig, UnlearnResult, unlearn

__all__ = [
    "METHODS", "FinetuneConfig", "FinetuneResult", "UnlearnConfig", "UnlearnMethod", "UnlearnResult", "encode_example",
    "finetune", "unlearn",
]
