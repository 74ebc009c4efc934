#!/usr/bin/python3
"""Kiln's DCGAN against the PyTorch peer (workloads B1/B2): generator inference at batch 64 and
the training step at batch 64, best configuration against best configuration.

  /usr/bin/python3 bench/gan_compare.py [--rounds 2] [--samples 5] [--build build] [--bf16]
  /usr/bin/python3 bench/gan_compare.py --threads 1     # one thread each, one configuration

Every round runs Kiln (build/bench/bench_gan_bench) with 1 and 2 threads and
bench/peers/dcgan.py in the peers README's four configurations (bench/side_by_side.py). --bf16
runs Kiln's generator inference in bf16 (PyTorch stays f32; the issue's goal is stated in f32).
bench/gan_side_by_side.sh is the older one-thread-count form of this comparison.
"""
import json
import os
import sys

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
POINTS = {"G_infer_b64": ("img_s", "img/s", 64), "train_step_b64": ("step_s", "step/s", 1)}


def parse(stdout):
    j = json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))
    out = {}
    for point, (suffix, unit, per_call) in POINTS.items():
        median = j[f"{point}_{suffix}"][0]  # [median, worst, best]
        out[point] = {"value": median, "unit": unit,
                      "per_cpu_second": per_call / j[f"{point}_cpu_s"]}
    return out


def main():
    ap = side_by_side.argument_parser(rounds=2, doc=__doc__)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    kiln = side_by_side.kiln_configurations(
        lambda t: [os.path.join(a.build, "bench", "bench_gan_bench"), "--threads", str(t),
                   "--samples", str(a.samples)] + (["--bf16"] if a.bf16 else []), a.threads)
    torch = side_by_side.torch_configurations(
        lambda t: ["/usr/bin/python3", os.path.join(HERE, "peers", "dcgan.py"), "bench",
                   "--threads", str(t), "--samples", str(a.samples)], a.torch_libdir, a.threads)
    side_by_side.compare(kiln, torch, a.rounds, parse)


if __name__ == "__main__":
    sys.exit(main())
