"""Training that changes weights, for benchmarks only: supervised fine-tuning of target and retain models
(and, next, the gradient unlearning baselines ECO is compared with). The guard itself never trains the LM."""

from .sft import FinetuneConfig, FinetuneResult, encode_example, finetune

__all__ = ["FinetuneConfig", "FinetuneResult", "encode_example", "finetune"]
