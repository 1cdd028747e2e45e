"""One strength evaluation of the TOFU mini surrogate (40 forget questions, paraphrase + 5 perturbed
answers each) on SmolLM2, every prompt corrupted, scored plain (one row per answer) and with the shared
prefix (one prefill per question), alternated so machine load hits both alike. Writes fast-scorer.json.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/results/fast-scorer/bench.py ../shared/data
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eco_unlearn import GuardedModel, load_model
from eco_unlearn.bench.environment import environment
from eco_unlearn.bench.tofu import format_items, load_splits
from eco_unlearn.fitting import every_prompt_guard
from eco_unlearn.fitting.objectives import make_objective
from eco_unlearn.runtime.corruption import CorruptionSpec
from eco_unlearn.runtime.tokens import TokenSelection

torch.set_num_threads(1)
splits = load_splits("mini", sys.argv[1])
model, tok = load_model("smollm2")
guarded = GuardedModel(model, tok)
guarded.attach(every_prompt_guard(CorruptionSpec("gaussian_first_n", 1.0), TokenSelection("all_but_last"), guarded.model_fingerprint))
items = format_items(splits.forget, True)
objectives = {s: make_objective("match_reference", items, reference_values=[1.0], shared_prefix=s, chat=True) for s in (False, True)}
seconds, values = {False: [], True: []}, {}
for _ in range(2):
    for shared, objective in objectives.items():
        began = time.perf_counter()
        values[shared] = objective.per_item(guarded)
        seconds[shared].append(time.perf_counter() - began)
        print("shared" if shared else "plain", seconds[shared][-1], flush=True)
result = {
    "items": len(items), "answers_per_item": 1 + len(items[0].perturbed_answers),
    "plain_seconds": seconds[False], "shared_seconds": seconds[True],
    "speedup": float(np.median(seconds[False]) / np.median(seconds[True])),
    "max_abs_log_truth_ratio_difference": float(np.max(np.abs(np.log(values[True]) - np.log(values[False])))),
    "note": "alternated in one process under load from other engineers; the ratio is the figure, not the times",
    "environment": environment(),
}
Path(__file__).with_name("fast-scorer.json").write_text(json.dumps(result, indent=2))
print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
