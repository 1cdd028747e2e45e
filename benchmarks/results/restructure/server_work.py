"""The server's own work per batch before generation (render, tokenize, classify, fail-closed check, plan,
prefill embeddings), old code (524da36) vs new, on SmolLM2 with the keyword demo guard. Run with
PYTHONPATH=<tree>; prints JSON."""
import json, statistics, sys, time
import torch
from eco_unlearn import GuardedModel, load_model
from eco_unlearn.demo import keyword_demo_guard
from eco_unlearn.serve.backends import prepare_prompts

NEW = sys.argv[1] == "new"
torch.set_num_threads(1)
model, tok = load_model("smollm2")
guard = keyword_demo_guard(model)
chats = [[{"role": "user", "content": p}] for p in (
    "Who is Harry Potter's best friend?", "What is the capital of France?", "Which house is Draco Malfoy in at Hogwarts?",
    "Write a haiku about the sea.", "Who teaches Potions at Hogwarts?", "How do I boil an egg?",
    "What is Hermione Granger's patronus?", "Name three prime numbers.")]
guarded = GuardedModel(model, tok)
if NEW:
    from eco_unlearn.serve.failclosed import classify, plan_failing_closed
    def once():
        prepared = prepare_prompts(guarded, chats, 16, default_max_tokens=256, param="messages")
        classified = classify(guard, [p.user_text for p in prepared])
        plan, classified = plan_failing_closed(guarded, guard, [p.encoded for p in prepared], [p.max_tokens for p in prepared], classified)
        return guarded.prefill_inputs(plan)
else:
    from eco_unlearn.models import context_length
    from eco_unlearn.serve.guards import DecidedGuard, check_selections, classify
    def once():
        prepared = prepare_prompts(tok, chats, 16, context_length(model), default_max_tokens=256, param="messages")
        classified = classify(guard, [p.user_text for p in prepared])
        classified = check_selections(guarded, guard, [p.prompt for p in prepared], [p.max_tokens for p in prepared], classified)
        guarded.guard = DecidedGuard(guard, classified.decisions)
        try:
            return guarded.prefill_inputs([p.prompt for p in prepared])
        finally:
            guarded.guard = None
for _ in range(5):
    once()
times = []
for _ in range(200):
    t = time.perf_counter(); batch = once(); times.append(time.perf_counter() - t)
flagged = sum(d.corrupted_tokens > 0 for d in batch.decisions)
print(json.dumps({"code": sys.argv[1], "batch": len(chats), "flagged": flagged, "median_ms": 1000 * statistics.median(times),
                  "p90_ms": 1000 * sorted(times)[int(0.9 * len(times))]}))
