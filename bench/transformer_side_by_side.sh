#!/bin/sh
# GPT-2-small inference, Kiln then PyTorch, in alternating rounds, and the ratios of the medians.
#   bench/transformer_side_by_side.sh [rounds=2] [reps=3]
#   KILN_MODES=bf16 TORCH_MODES=bf16w bench/transformer_side_by_side.sh 1 2   # one precision
#   TORCH_ARGS=--prefill-only ...   # PyTorch prefill only
# Needs build/bench/bench_transformer_bench (cmake --build build --target bench_transformer_bench)
# and /usr/bin/python3 with torch. Both run with 2 threads and OMP_WAIT_POLICY=PASSIVE (the
# peers README's best 2-thread configuration for GPT-2; it also keeps spinning threads from
# wasting a loaded machine). Prints `uptime` before and after: report it with the figures.
set -e
cd "$(dirname "$0")/.."
rounds=${1:-2}
reps=${2:-3}
out=$(mktemp)
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
unset OPENBLAS_CORETYPE
uptime
i=0
while [ $i -lt "$rounds" ]; do
  build/bench/bench_transformer_bench speed --modes "${KILN_MODES:-f32,bf16}" --reps "$reps" --threads 2 | tee -a "$out"
  /usr/bin/python3 bench/peers/gpt2.py --modes "${TORCH_MODES:-fp32,bf16w}" --reps "$reps" --threads 2 $TORCH_ARGS | tee -a "$out"
  i=$((i + 1))
done
uptime
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) >= 4 and p[0] in ("kiln", "gpt2"):
        mode = {"fp32": "f32", "bf16w": "bf16"}.get(p[1], p[1])
        rows.setdefault((p[2], mode), {}).setdefault(p[0], []).append(float(p[3]))
print("\n| metric | precision | Kiln tok/s | PyTorch tok/s | Kiln / PyTorch |")
print("|---|---|---|---|---|")
for (metric, mode), v in sorted(rows.items()):
    k, t = statistics.median(v.get("kiln", [0])), statistics.median(v.get("gpt2", [0]))
    print(f"| {metric} | {mode} | {k:.1f} | {t:.1f} | {k / t if t else 0:.2f} |")
PY
rm -f "$out"
