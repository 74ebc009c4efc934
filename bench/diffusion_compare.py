#!/usr/bin/python3
"""Kiln's diffusion U-Net against its PyTorch peer, side by side (workload B6): one denoising step
and one training step at batch 64, in alternating rounds (Kiln, PyTorch, Kiln, ...) so that load
drift on a shared machine hits both alike. Prints each round and the median ratio of speeds
(PyTorch time / Kiln time: above 1 means Kiln is faster).

  /usr/bin/python3 bench/diffusion_compare.py [--rounds 2] [--reps 3] [--threads 2] [--bf16]
      [--build build] [--what both]

PyTorch runs with OMP_NUM_THREADS = threads, OPENBLAS_NUM_THREADS = 1 (its best configuration
"2s" for this workload in ../shared/peers/README.md) and the malloc settings of the peers README;
with --bf16 Kiln runs the convolutions and linear layers in bf16, and PyTorch runs twice per
round: in f32 (the peers README's figure, which issue 8's goal is stated against) and in bf16
(CPU autocast); both ratios are printed.
"""
import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {j["case"]: j for j in map(json.loads, out.splitlines()) if "case" in j}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--what", default="both")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    a = ap.parse_args()
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.update({"OMP_NUM_THREADS": str(a.threads), "OPENBLAS_NUM_THREADS": "1",
                "MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                "MALLOC_TOP_PAD_": str(256 << 20)})
    extra = ["--bf16"] if a.bf16 else []
    kiln = [os.path.join(a.build, "bench", "bench_diffusion_bench"), "--threads", str(a.threads),
            "--reps", str(a.reps), "--what", a.what] + extra
    torch = ["/usr/bin/python3", os.path.join(HERE, "peers", "ddpm.py"), "bench", "--threads",
             str(a.threads), "--reps", str(a.reps), "--what", a.what]
    peers = [("pytorch", torch + extra)]
    if a.bf16:
        peers = [("pytorch f32", torch), ("pytorch bf16", torch + extra)]
    ratios = {}
    for r in range(a.rounds):
        k = run(kiln, env)
        for name, cmd in peers:
            t = run(cmd, env)
            for case in k:
                tcase = case if case in t else case.replace("_bf16", "_f32")
                if tcase not in t:
                    continue
                ratio = t[tcase]["median_s"] / k[case]["median_s"]
                ratios.setdefault((case, name), []).append(ratio)
                print(f"round {r}: {case}: kiln {k[case]['median_s']:.3f} s "
                      f"[{k[case]['best_s']:.3f}-{k[case]['worst_s']:.3f}], {name} "
                      f"{t[tcase]['median_s']:.3f} s [{t[tcase]['best_s']:.3f}-"
                      f"{t[tcase]['worst_s']:.3f}], speed ratio {ratio:.2f}", flush=True)
    for (case, name), v in ratios.items():
        print(f"{case}: Kiln speed / {name} speed = {statistics.median(v):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in v)})")


if __name__ == "__main__":
    main()
