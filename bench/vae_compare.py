#!/usr/bin/python3
"""Kiln's vae model against its PyTorch peer, side by side (workload B3): training step at batch
128 and decode at batch 256.

  /usr/bin/python3 bench/vae_compare.py [--rounds 3] [--reps 5] [--build build]
  /usr/bin/python3 bench/vae_compare.py --threads 1     # one thread each, one configuration

By default every round runs Kiln with 1 and 2 threads and PyTorch in the peers README's four
configurations, and the ratio is best against best (bench/side_by_side.py). Besides wall-clock
rates, both report rates per second of process CPU time: on a loaded machine the wall-clock
ratio mostly measures how each side copes with preemption, the CPU-time ratio how much work
each does.
"""
import json
import os
import sys

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(stdout):
    recs = (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
    return {j["metric"]: {"value": j["median"], "unit": j["unit"],
                          "per_cpu_second": j["per_cpu_second"]} for j in recs if "metric" in j}


def main():
    ap = side_by_side.argument_parser(rounds=3, doc=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    kiln = side_by_side.kiln_configurations(
        lambda t: [os.path.join(a.build, "bench", "bench_vae_bench"), "--threads", str(t),
                   "--reps", str(a.reps)], a.threads)
    torch = side_by_side.torch_configurations(
        lambda t: ["/usr/bin/python3", os.path.join(HERE, "peers", "vae.py"), "bench",
                   "--threads", str(t), "--reps", str(a.reps)], a.torch_libdir, a.threads)
    side_by_side.compare(kiln, torch, a.rounds, parse)


if __name__ == "__main__":
    sys.exit(main())
