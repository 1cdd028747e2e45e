#!/usr/bin/env bash
# Old (524da36) and new code side by side: serve load benchmark interleaved, then overhead.
set -u
PY=/work/main/.venv/bin/python
run() {  # name tree args...
  local name=$1 tree=$2; shift 2
  echo "=== $name $(date +%T)"
  (cd "$tree" && PYTHONPATH="$tree" "$PY" -m eco_unlearn.cli "$@") > /tmp/bench/$name.log 2>&1
  echo "=== $name done rc=$? $(date +%T)"
}
for r in 1 2; do
  run serve-old-$r /work/wt/old bench serve --duration 30 --out /tmp/bench/serve-old-$r.json
  run serve-new-$r /work/main bench serve --duration 30 --out /tmp/bench/serve-new-$r.json
done
run overhead-new /work/main bench overhead --repeats 5 --out /tmp/bench/overhead-new.json
run overhead-old /work/wt/old bench overhead --repeats 5 --out /tmp/bench/overhead-old.json
echo ALL DONE
