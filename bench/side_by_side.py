"""Best configuration against best configuration: the comparison the side-by-side scripts share.

../shared/peers/README.md defines "the peer figure to beat" as PyTorch's best of its thread
configurations ("1" = 1 thread; "2" = 2 threads; "2p" = 2 threads with
OMP_WAIT_POLICY=PASSIVE; "2s" = 2 torch threads with single-threaded OpenBLAS). The scripts that
import this module run every configuration of each side in every round, one after the other, so
that load drift on a shared machine hits all of them alike, and print per workload the median
of each configuration and the ratio best Kiln / best PyTorch.

A configuration is (command, environment overrides). `parse(stdout)` turns a command's output
into {metric: {"value": rate, "unit": unit, "per_cpu_second": rate per process CPU second}}
("per_cpu_second" may be None when a program does not measure it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

TORCH_LIBDIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def argument_parser(rounds, doc=None):
    """The options every side-by-side script takes: --rounds, --threads (0: every configuration,
    best against best), --build and --torch-libdir. Scripts add their own on top."""
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--threads", type=int, default=0,
                    help="run both sides with this many threads only (default: every "
                         "configuration, best against best)")
    ap.add_argument("--build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--torch-libdir", default=TORCH_LIBDIR,
                    help="prepended to LD_LIBRARY_PATH for PyTorch: a folder with OpenBLAS's "
                         "libblas.so.3")
    return ap


def base_environment():
    """The caller's environment without inherited threading knobs, with the peers README's glibc
    malloc settings (keep freed memory rather than unmapping torch's large temporaries)."""
    env = dict(os.environ)
    for knob in ("OPENBLAS_CORETYPE", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS"):
        env.pop(knob, None)
    env.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(4 << 30),
               MALLOC_TOP_PAD_=str(256 << 20))
    return env


def torch_configurations(command, torch_libdir=TORCH_LIBDIR, threads=None):
    """PyTorch's four configurations of the peers README (or one, with `threads` threads
    everywhere). `command(threads)` is the peer's command line for a thread count. OpenBLAS is
    put first on the library path when `torch_libdir` exists: Debian's torch otherwise uses
    whatever libblas.so.3 the alternatives system picks, possibly the reference BLAS."""
    lib = {"LD_LIBRARY_PATH": torch_libdir} if os.path.isdir(torch_libdir) else {}

    def cfg(t, blas, **extra):
        return (command(t), {"OMP_NUM_THREADS": str(t), "OPENBLAS_NUM_THREADS": str(blas), **lib,
                             **extra})

    if threads:
        return {f"torch {threads}t": cfg(threads, threads)}
    return {"torch 1": cfg(1, 1), "torch 2": cfg(2, 2),
            "torch 2p": cfg(2, 2, OMP_WAIT_POLICY="PASSIVE"), "torch 2s": cfg(2, 1)}


def kiln_configurations(command, threads=None):
    """Kiln at 1 and 2 threads (or `threads` only); `command(threads)` is its command line."""
    counts = [threads] if threads else [1, 2]
    return {f"kiln {t}t": (command(t), {"OMP_NUM_THREADS": str(t)}) for t in counts}


def compare(kiln_cfgs, torch_cfgs, rounds, parse, out=sys.stdout):
    """Runs every configuration `rounds` times, prints each run and the table; returns
    {metric: (best Kiln name, best PyTorch name, ratio of medians)}."""
    base = base_environment()
    everything = {**kiln_cfgs, **torch_cfgs}
    rates = {name: {} for name in everything}
    cpu = {name: {} for name in everything}
    units = {}
    load_before = os.getloadavg()[0]
    for r in range(rounds):
        for name, (cmd, env) in everything.items():
            stdout = subprocess.run(cmd, env={**base, **env}, check=True, capture_output=True,
                                    text=True).stdout
            for m, rec in parse(stdout).items():
                rates[name].setdefault(m, []).append(rec["value"])
                cpu[name].setdefault(m, []).append(rec["per_cpu_second"])
                units[m] = rec["unit"]
                cpu_note = ("" if rec["per_cpu_second"] is None else
                            f" ({rec['per_cpu_second']:.4g} per CPU second)")
                print(f"round {r + 1}: {m}: {name}: {rec['value']:.4g} {rec['unit']}{cpu_note}",
                      file=out, flush=True)
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}",
          file=out)
    names = list(everything)
    print("| workload | unit | " + " | ".join(names) + " | best Kiln / best PyTorch |", file=out)
    print("|---|---|" + "---|" * len(names) + "---|", file=out)
    result = {}
    for m, unit in units.items():
        med = {n: statistics.median(rates[n][m]) for n in names}
        best_k = max(kiln_cfgs, key=lambda n: med[n])
        best_t = max(torch_cfgs, key=lambda n: med[n])
        ratio = med[best_k] / med[best_t]
        cells = " | ".join(f"{med[n]:.4g}" for n in names)
        print(f"| {m} | {unit} | {cells} | **{ratio:.2f}×** ({best_k} / {best_t}) |", file=out)
        result[m] = (best_k, best_t, ratio)
    for m, (best_k, best_t, ratio) in result.items():
        rec = {"metric": m, "rounds": rounds, "best_kiln": best_k, "best_pytorch": best_t,
               "ratio_kiln_over_pytorch": round(ratio, 2),
               "per_round_ratios": [round(k / t, 2) for k, t in
                                    zip(rates[best_k][m], rates[best_t][m])]}
        if None not in cpu[best_k][m] + cpu[best_t][m]:
            rec["cpu_time_ratio"] = round(statistics.median(cpu[best_k][m]) /
                                          statistics.median(cpu[best_t][m]), 2)
        print(json.dumps(rec), file=out)
    return result
