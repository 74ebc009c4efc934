#!/usr/bin/python3
"""Kiln's rnn plugin against the PyTorch peer on the B4 char-LSTM workload, side by side.

  /usr/bin/python3 bench/rnn_side_by_side.py [--build build] [--rounds 2] [--reps 5]
  /usr/bin/python3 bench/rnn_side_by_side.py --threads 1     # one thread each
  /usr/bin/python3 bench/rnn_side_by_side.py --bf16 --points sample_b1,sample_b32
  /usr/bin/python3 bench/rnn_side_by_side.py --bf16 --torch-bf16 --points sample_b32
  /usr/bin/python3 bench/rnn_side_by_side.py --int8 --torch-bf16 --points sample_b32

Every round runs build/plugins/rnn/bench_rnn_plugin (Kiln, 1 and 2 threads) and
bench/peers/char_lstm.py speed (PyTorch 1.13 in the peers README's four configurations), point
by point (training step, sampling at batch 1, sampling at batch 32), and prints the medians and
the ratio best Kiln configuration / best PyTorch configuration (bench/side_by_side.py). Kiln's
sampling at batch 1 is fastest on one thread (a 2-thread team costs more to wake than the
work of one step), so both thread counts are always measured. --bf16 samples with Kiln's LSTM in
bf16 ([compute] precision = "bf16"); PyTorch stays f32, as the issue's goal is stated, and
training is f32 on both sides either way. --torch-bf16 samples with the PyTorch model in bfloat16
too (bench/peers/char_lstm.py --sample-dtype bf16), the comparison at equal precision. --int8
samples with Kiln's LSTM in int8 (rnn/generate quantize = "int8"); --torch-qint8 samples with
PyTorch's dynamic int8 LSTM (torch.ao.quantization.quantize_dynamic).
"""
import json
import os
import sys

import side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
POINTS = ["train", "sample_b1", "sample_b32"]


def parse(stdout):
    out = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        if "metric" in j and "value" in j:
            out[j["metric"]] = {"value": j["value"], "unit": j["unit"],
                                "per_cpu_second": j["per_call"] / j["cpu_s_per_call"]}
    return out


def main():
    ap = side_by_side.argument_parser(rounds=2, doc=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--torch-bf16", action="store_true")
    ap.add_argument("--torch-qint8", action="store_true")
    ap.add_argument("--points", default=",".join(POINTS))
    a = ap.parse_args()
    exe = os.path.join(a.build, "plugins", "rnn", "bench_rnn_plugin")
    peer = os.path.join(HERE, "peers", "char_lstm.py")
    # One table per point, so that each point's configurations run back to back.
    for point in a.points.split(","):
        kiln = side_by_side.kiln_configurations(
            lambda t: [exe, "--threads", str(t), "--reps", str(a.reps), "--points", point] +
            (["--bf16"] if a.bf16 else []) + (["--int8"] if a.int8 else []), a.threads)
        torch = side_by_side.torch_configurations(
            lambda t: ["/usr/bin/python3", peer, "speed", "--threads", str(t), "--reps",
                       str(a.reps), "--points", point] +
            (["--sample-dtype", "bf16"] if a.torch_bf16 else []) +
            (["--sample-dtype", "qint8"] if a.torch_qint8 else []), a.torch_libdir, a.threads)
        side_by_side.compare(kiln, torch, a.rounds, parse)


if __name__ == "__main__":
    sys.exit(main())
