#!/usr/bin/python3
"""GPT-2-small inference (workload B5), Kiln against PyTorch, best configuration against best.

  /usr/bin/python3 bench/gpt2_compare.py [--rounds 1] [--reps 3] [--build build]
  /usr/bin/python3 bench/gpt2_compare.py --threads 2    # 2 threads each, one configuration

Every round runs build/bench/bench_transformer_bench speed (f32 and bf16 weights) with 1 and 2
threads and bench/peers/gpt2.py (fp32 and bf16w = model.to(bfloat16)) in the peers README's
four configurations (bench/side_by_side.py), and prints per point (prefill of 128 tokens,
decode at batch 1 and 8) and precision the medians and the ratio best Kiln / best PyTorch.
bench/transformer_side_by_side.sh is the older form: both sides at 2 threads with
OMP_WAIT_POLICY=PASSIVE, which slows Kiln's batch-1 decode (each small GEMM wakes a sleeping
thread).
"""
import os
import sys

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
MODE = {"f32": "f32", "bf16": "bf16", "fp32": "f32", "bf16w": "bf16"}


def parse(stdout):
    out = {}
    for line in stdout.splitlines():
        p = line.split()
        if len(p) >= 4 and p[0] in ("kiln", "gpt2") and p[1] in MODE:
            out[f"{p[2]} {MODE[p[1]]}"] = {"value": float(p[3]), "unit": "tok/s",
                                           "per_cpu_second": None}
    return out


def main():
    ap = side_by_side.argument_parser(rounds=1, doc=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    kiln = side_by_side.kiln_configurations(
        lambda t: [os.path.join(a.build, "bench", "bench_transformer_bench"), "speed", "--modes",
                   "f32,bf16", "--reps", str(a.reps), "--threads", str(t)], a.threads)
    torch = side_by_side.torch_configurations(
        lambda t: ["/usr/bin/python3", os.path.join(HERE, "peers", "gpt2.py"), "--modes",
                   "fp32,bf16w", "--reps", str(a.reps), "--threads", str(t)], a.torch_libdir,
        a.threads)
    side_by_side.compare(kiln, torch, a.rounds, parse)


if __name__ == "__main__":
    sys.exit(main())
