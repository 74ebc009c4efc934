#!/usr/bin/python3
"""Kiln's rnn plugin against the PyTorch peer on the B4 char-LSTM workload, side by side.

Runs, interleaved point by point and round by round, build/plugins/rnn/bench_rnn_plugin (Kiln,
2 threads) and bench/peers/char_lstm.py speed (PyTorch 1.13 in the peers README's
configurations "1" = 1 thread and "2p" = 2 threads with OMP_WAIT_POLICY=PASSIVE), then prints
the medians and the ratio Kiln / best PyTorch configuration, with the load average before and
after. Both sides run with OMP_WAIT_POLICY=PASSIVE and glibc malloc tuned as in the peers README.

  /usr/bin/python3 bench/rnn_side_by_side.py [--build build] [--rounds 2] [--reps 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
POINTS = ["train_step_b32_t128", "sample_b1", "sample_b32"]
SHORT = {"train_step_b32_t128": "train", "sample_b1": "sample_b1", "sample_b32": "sample_b32"}


def run(cmd, env_extra):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.update({"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                "MALLOC_TOP_PAD_": str(256 << 20)})
    env.update(env_extra)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--torch-libdir", default="/usr/lib/x86_64-linux-gnu/openblas-pthread",
                    help="prepended to LD_LIBRARY_PATH for PyTorch: a folder with OpenBLAS's "
                         "libblas.so.3 (Debian's torch otherwise uses whatever libblas.so.3 "
                         "the alternatives system picks, possibly the reference BLAS)")
    args = ap.parse_args()
    kiln_exe = os.path.join(args.build, "plugins", "rnn", "bench_rnn_plugin")
    peer = os.path.join(HERE, "peers", "char_lstm.py")
    torch_env = {}
    if os.path.isdir(args.torch_libdir):
        torch_env["LD_LIBRARY_PATH"] = args.torch_libdir
    configs = {
        "kiln 2t": ([kiln_exe, "--threads", "2", "--reps", str(args.reps)],
                    {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}),
        "kiln 1t": ([kiln_exe, "--threads", "1", "--reps", str(args.reps)],
                    {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}),
        "torch 1": (["/usr/bin/python3", peer, "speed", "--threads", "1", "--reps", str(args.reps)],
                    {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **torch_env}),
        "torch 2p": (["/usr/bin/python3", peer, "speed", "--threads", "2", "--reps",
                      str(args.reps)], {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", **torch_env}),
    }
    load_before = os.getloadavg()
    results = {name: {p: [] for p in POINTS} for name in configs}
    cpu_rate = {name: {p: [] for p in POINTS} for name in configs}  # work per CPU second
    blas = set()
    for r in range(args.rounds):
        for point in POINTS:
            for name, (cmd, env) in configs.items():
                flag = ["--points", SHORT[point]]
                for rec in run(cmd + flag, env):
                    results[name][rec["metric"]].append(rec["value"])
                    cpu_rate[name][rec["metric"]].append(rec["per_call"] / rec["cpu_s_per_call"])
                    if "blas" in rec:
                        blas.add(rec["blas"])
                print(f"round {r + 1} {point:22s} {name:9s} {results[name][point][-1]:10.2f}",
                      file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"(1-minute; {os.cpu_count()} cores); PyTorch BLAS: {', '.join(sorted(blas))}")
    print("Wall-clock throughput (median of rounds):")
    print("| point | unit | Kiln 2 threads | Kiln 1 thread | PyTorch 1 thread | PyTorch 2p "
          "| best Kiln / best PyTorch |")
    print("|---|---|---|---|---|---|---|")
    for point in POINTS:
        med = {name: statistics.median(results[name][point]) for name in configs}
        best_t = max(med["torch 1"], med["torch 2p"])
        best_k = max(med["kiln 2t"], med["kiln 1t"])
        unit = "step/s" if point.startswith("train") else "char/s"
        print(f"| {point} | {unit} | {med['kiln 2t']:.2f} | {med['kiln 1t']:.2f} | "
              f"{med['torch 1']:.2f} | {med['torch 2p']:.2f} | {best_k / best_t:.2f}x |")
    print()
    print("Work per CPU-second of the process (all its threads), single-threaded configurations:")
    print("| point | unit | Kiln 1 thread | PyTorch 1 thread | Kiln / PyTorch |")
    print("|---|---|---|---|---|")
    for point in POINTS:
        k = statistics.median(cpu_rate["kiln 1t"][point])
        t = statistics.median(cpu_rate["torch 1"][point])
        unit = "step/cpu-s" if point.startswith("train") else "char/cpu-s"
        print(f"| {point} | {unit} | {k:.2f} | {t:.2f} | {k / t:.2f}x |")


if __name__ == "__main__":
    main()
