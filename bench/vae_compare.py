#!/usr/bin/python3
"""Kiln's vae model against its PyTorch peer, side by side (workload B3): training step at batch
128 and decode at batch 256, in alternating rounds (Kiln, PyTorch, Kiln, ...) so that load drift
on a shared machine hits both alike. Prints each round and the median ratio Kiln / PyTorch.

  /usr/bin/python3 bench/vae_compare.py [--rounds 3] [--threads 1] [--build build]

PyTorch runs with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = threads (its best configurations in
../shared/peers/README.md are 1 thread, or 2 with single-threaded OpenBLAS) and the malloc
settings of the peers README. Besides wall-clock rates, both report rates per second of process
CPU time: on a loaded machine the wall-clock ratio mostly measures how each side copes with
preemption, the CPU-time ratio how much work each does.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {j["metric"]: j for j in map(json.loads, out.splitlines()) if "metric" in j}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    a = ap.parse_args()
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.update(OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(4 << 30),
               MALLOC_TOP_PAD_=str(256 << 20))
    kiln = [os.path.join(a.build, "bench", "bench_vae_bench"), "--threads", str(a.threads),
            "--reps", str(a.reps)]
    torch = ["/usr/bin/python3", os.path.join(HERE, "peers", "vae.py"), "bench", "--threads",
             str(a.threads), "--reps", str(a.reps)]
    ratios, cpu_ratios = {}, {}
    for r in range(a.rounds):
        k = run(kiln, env)
        t = run(torch, env)
        for m in k:
            ratio = k[m]["median"] / t[m]["median"]
            cpu = k[m]["per_cpu_second"] / t[m]["per_cpu_second"]
            ratios.setdefault(m, []).append(ratio)
            cpu_ratios.setdefault(m, []).append(cpu)
            print(f"round {r + 1}: {m}: kiln {k[m]['median']:.4g} {k[m]['unit']} "
                  f"({k[m]['per_cpu_second']:.4g} per CPU second), pytorch {t[m]['median']:.4g} "
                  f"({t[m]['per_cpu_second']:.4g}), ratio {ratio:.2f} (CPU time {cpu:.2f})",
                  flush=True)
    for m, v in ratios.items():
        print(json.dumps({"metric": m, "threads": a.threads, "rounds": a.rounds,
                          "median_ratio_kiln_over_pytorch": round(statistics.median(v), 2),
                          "ratios": [round(x, 2) for x in v],
                          "median_cpu_time_ratio": round(statistics.median(cpu_ratios[m]), 2)}))


if __name__ == "__main__":
    sys.exit(main())
