#!/usr/bin/env python3
"""Kiln's style_transfer `stylize` against its PyTorch peer, side by side: iterations/s of the
Gatys optimisation at 256x256 (random feature net, Adam; see configs/style-bench.toml and
bench/peers/style.py), interleaved Kiln, PyTorch, Kiln, PyTorch, ... so both see the same load.

    OMP_NUM_THREADS=2 /usr/bin/python3 bench/style_bench.py [--reps 3] [--iterations 20]
                                                              [--optimizer adam|lbfgs]

Kiln's figure is the manifest's steady_iterations_per_second (iterations after the third, timed
inside the task); PyTorch's times the iterations after three warm-up ones. Prints each pair, the
medians, their ratio and the machine load (uptime) before and after.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_kiln(kiln, iterations, optimizer, run_dir):
    args = [kiln, "run", os.path.join(ROOT, "configs/style-bench.toml"),
            "--set", f"pipeline.run_dir={run_dir}",
            "--set", f"stylize.iterations={iterations + 3}",
            "--set", f"stylize.optimizer={optimizer}"]
    if optimizer == "lbfgs":
        args += ["--set", "stylize.lr=1.0", "--set", "stylize.line_search=none"]
    subprocess.run(args, check=True, capture_output=True)
    with open(os.path.join(run_dir, "stylize", "manifest.jsonl")) as f:
        for line in f:
            entry = json.loads(line)
            if entry["path"].endswith(".png"):
                return float(entry["info"]["steady_iterations_per_second"])
    raise RuntimeError("no image in the manifest")


def run_torch(iterations, optimizer):
    # As /work/shared/peers runs torch: glibc malloc keeps freed memory (otherwise large
    # temporaries are mmap'd and unmapped every call) and OpenBLAS picks its own kernels.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(4 << 30),
               MALLOC_TOP_PAD_=str(256 << 20))
    env.pop("OPENBLAS_CORETYPE", None)
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/peers/style.py"),
                          "--iterations", str(iterations), "--optimizer", optimizer],
                         check=True, capture_output=True, text=True, env=env).stdout
    return float(json.loads(out.strip().splitlines()[-1])["iterations_per_second"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build/host/kiln"))
    args = ap.parse_args()
    print("load before:", uptime())
    kiln_runs, torch_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.reps):
            k = run_kiln(args.kiln, args.iterations, args.optimizer, os.path.join(tmp, str(r)))
            t = run_torch(args.iterations, args.optimizer)
            kiln_runs.append(k)
            torch_runs.append(t)
            print(f"rep {r}: kiln {k:.3f} it/s, torch {t:.3f} it/s, ratio {k / t:.2f}", flush=True)
    k, t = statistics.median(kiln_runs), statistics.median(torch_runs)
    print(f"stylize 256x256 {args.optimizer}: kiln {k:.3f} it/s, torch {t:.3f} it/s "
          f"(medians of {args.reps}); kiln / torch = {k / t:.2f}")
    print("load after:", uptime())


if __name__ == "__main__":
    sys.exit(main())
