#!/bin/sh
# Kiln's DCGAN against the PyTorch peer on the B1/B2 workloads (generator inference at batch 64,
# training step at batch 64), interleaved: Kiln, PyTorch, Kiln, PyTorch, ... so that drift in
# the load of a shared machine hits both alike. Prints each round's JSON and the ratios of the
# medians of all rounds, by wall time and by process CPU time per call (the CPU figure does not
# depend on the share of a busy machine each process gets). Both run on THREADS threads
# (default 1).
#   bench/gan_side_by_side.sh [ROUNDS] [THREADS]        (after building bench_gan_bench)
# KILN_ARGS=--bf16 runs Kiln's generator inference in bf16 (PyTorch stays f32).
set -eu
ROUNDS=${1:-2}
THREADS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${KILN_BUILD:-$HERE/../build}
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=1
# The peers' malloc settings (see /work/shared/peers/README.md, "Environment").
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=268435456
unset OPENBLAS_CORETYPE || true
OUT=$(mktemp)
echo "load before: $(uptime)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  # shellcheck disable=SC2086 # KILN_ARGS is a list of flags
  k=$("$BUILD/bench/bench_gan_bench" --samples "${SAMPLES:-5}" --threads "$THREADS" ${KILN_ARGS:-})
  echo "round $r kiln  $k"
  echo "kiln $k" >>"$OUT"
  t=$(/usr/bin/python3 "$HERE/peers/dcgan.py" bench --threads "$THREADS" --samples "${SAMPLES:-5}")
  echo "round $r torch $t"
  echo "torch $t" >>"$OUT"
  r=$((r + 1))
done
echo "load after: $(uptime)"
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {"kiln": [], "torch": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    rows[who].append(json.loads(js))
for key, unit in (("G_infer_b64_img_s", "img/s"), ("train_step_b64_step_s", "step/s")):
    k = statistics.median(r[key][0] for r in rows["kiln"])
    t = statistics.median(r[key][0] for r in rows["torch"])
    print(f"{key}: kiln {k:.2f} {unit}, pytorch {t:.2f} {unit}, ratio {k / t:.2f}x")
# CPU seconds per call: what each side costs, whatever share of the cores it got.
for key in ("G_infer_b64_cpu_s", "train_step_b64_cpu_s"):
    k = statistics.median(r[key] for r in rows["kiln"])
    t = statistics.median(r[key] for r in rows["torch"])
    print(f"{key}: kiln {k:.4f} s, pytorch {t:.4f} s, ratio (pytorch/kiln) {t / k:.2f}x")
PY
rm -f "$OUT"
