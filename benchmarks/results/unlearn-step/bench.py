"""Seconds per unlearning step on SmolLM2 (the base model standing in for the TOFU target: same size and
shapes), TOFU mini forget and retain pairs, batch 8, one epoch (5 steps) per method, alternated in one
process. Writes unlearn-step.json; a grid point of E epochs costs about 5 E steps.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/results/unlearn-step/bench.py ../shared/data ga,npo,rmu
"""

import copy
import json
import sys
from pathlib import Path

import torch

from eco_unlearn import load_model
from eco_unlearn.bench.environment import environment
from eco_unlearn.bench.tofu import format_items, load_splits
from eco_unlearn.bench.tofu.baselines import load_idk_answers, peak_memory
from eco_unlearn.training.unlearn import UnlearnConfig, unlearn

torch.set_num_threads(1)
splits = load_splits("mini", sys.argv[1])
base, tok = load_model("smollm2")
forget = [(i.prompt, i.answer) for i in format_items(splits.forget, True)]
retain = [(i.prompt, i.answer) for i in format_items(splits.retain_train, True)]
idk = load_idk_answers(sys.argv[1], len(forget))
rows = {}
for method in sys.argv[2].split(","):
    net = copy.deepcopy(base)
    with peak_memory() as memory:
        result = unlearn(net, tok, forget, retain, UnlearnConfig(method=method, epochs=1, learning_rate=1e-5), alternates=idk, chat=True)
    rows[method] = {"steps": result.steps, "seconds": result.seconds, "seconds_per_step": result.seconds / result.steps,
                    "peak_rss_bytes": memory["peak_rss_bytes"], "loss": result.epoch_losses}
    print(method, rows[method], flush=True)
    del net
Path(__file__).with_name("unlearn-step.json").write_text(json.dumps(
    {"methods": rows, "note": "one thread, under load from other engineers: compare ratios", "environment": environment()}, indent=2))
