#!/usr/bin/python3
"""PyTorch peer of Kiln's rnn plugin (workload B4 of the peers README, plus fortunes training).

Three modes:

  speed  The B4 char-LSTM workload: Embedding(96, 64) -> LSTM(64 -> 512, 2 layers) ->
         Linear(512 -> 96), 3.34 M parameters.
           train_step  batch 32, sequence 128, zero initial state, mean cross-entropy, backward,
                       Adam lr 2e-3, no clipping (step/s)
           sample_bN   prime with one character, then 256 steps, one nn.LSTM call per character
                       with the state carried, multinomial over softmax(logits / 1.0), N
                       sequences in lock-step (chars/s). --sample-dtype bf16 samples with the model in
                       bfloat16 (model.to(torch.bfloat16); softmax and multinomial in f32);
                       --sample-dtype qint8 with PyTorch's dynamic int8 quantization of the
                       LSTM and the head (torch.ao.quantization.quantize_dynamic).
         Timing: warm-up calls untimed; each sample times `inner` back-to-back calls with inner
         chosen so a sample lasts >= 50 ms (or 1 call); the median of --reps samples, with the
         worst and best. Prints one JSON line per point.

  train  Trains the same model as configs/rnn-fortunes.toml the way Kiln's rnn/train does and
         prints the validation bits per character (JSON lines). The data pipeline is Kiln's
         (kiln/text.hpp): every regular file under the folder, sorted by relative path, hidden
         files and *.dat skipped, symlinked duplicates kept once, a newline appended to a file
         that lacks one; the last val_fraction of each file (from the first line start at or
         after the cut) is validation; the vocabulary is the sorted code points of the whole
         corpus; the training ids are cut into `streams` contiguous streams read in chunks of
         seq_len with the LSTM state carried (detached) from batch to batch; Adam, gradient-norm
         clipping, cosine learning-rate decay over decay_steps (torch's CosineAnnealingLR
         formula); validation reads the held-out ids as `streams` contiguous parts with the state
         carried, exactly as Kiln's sequence_nll.

  score  Bits per character of a Kiln rnn checkpoint on a text, in PyTorch, with the model in
         f32 and in bfloat16: the text encoded with the checkpoint's vocabulary (unknown
         characters left out), scored as one sequence in chunks of 128 with the state carried,
         as Kiln's rnn/evaluate with streams = 1. This is what PyTorch's bf16 sampling costs in
         quality, next to Kiln's precisions (docs/models/rnn.md).

  /usr/bin/python3 bench/peers/char_lstm.py speed [--threads 2] [--reps 7]
  /usr/bin/python3 bench/peers/char_lstm.py score --model models/rnn-fortunes.safetensors \
      --text /usr/share/common-licenses/GPL-3
  /usr/bin/python3 bench/peers/char_lstm.py train --data /usr/share/games/fortunes --hidden 256 ...

Set OMP_NUM_THREADS / OMP_WAIT_POLICY in the environment before starting (see the peers README:
"2p" = 2 threads with OMP_WAIT_POLICY=PASSIVE is PyTorch's best configuration for this model).
"""
import argparse
import fnmatch
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CharRnn(nn.Module):
    """embed -> LSTM/GRU (dropout between layers) -> dropout -> head, named as Kiln's model."""

    def __init__(self, vocab, embed=64, hidden=512, layers=2, dropout=0.0, cell="lstm"):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids_tn, state=None):
        y, state = self.rnn(self.embed(ids_tn), state)
        T, N, H = y.shape
        return self.head(self.drop(y.reshape(T * N, H))), state


# ----------------------------------------------------------------------------------- timing

def blas_library():
    """The BLAS library this process loaded (Debian's torch links libblas.so.3: OpenBLAS or the
    much slower reference BLAS, whichever the alternatives system or LD_LIBRARY_PATH gives)."""
    torch.randn(8, 8) @ torch.randn(8, 8)
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
        return ",".join(sorted(os.path.basename(x) for x in libs))
    except OSError:
        return "?"


def measure(fn, reps, warmup=2, min_time=0.05):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = max(1, int(math.ceil(min_time / max(one, 1e-9)))) if one < min_time else 1
    samples, cpu = [], []
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
        cpu.append((time.process_time() - c0) / inner)
    return statistics.median(samples), max(samples), min(samples), statistics.median(cpu)


def speed(args):
    torch.manual_seed(0)
    V, B, T = 96, 32, 128
    model = CharRnn(V, 64, 512, 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (T, B), generator=g)
    y = torch.randint(0, V, (T, B), generator=g)

    def train_step():
        logits, _ = model(x)
        loss = F.cross_entropy(logits, y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    blas = blas_library()

    def report(metric, unit, per_call, med, worst, best, cpu):
        print(json.dumps({"impl": "torch", "workload": "char_lstm", "metric": metric,
                          "unit": unit, "value": per_call / med, "worst": per_call / worst,
                          "best": per_call / best, "cpu_s_per_call": cpu, "per_call": per_call,
                          "threads": torch.get_num_threads(),
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                          "blas": blas, "sample_dtype": args.sample_dtype}), flush=True)

    if "train" in args.points:
        report("train_step_b32_t128", "step/s", 1.0, *measure(train_step, args.reps))
    model.eval()
    if args.sample_dtype == "qint8":
        model = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear},
                                                       dtype=torch.qint8)
    else:
        model.to(torch.bfloat16 if args.sample_dtype == "bf16" else torch.float32)
    for n in (1, 32):
        if f"sample_b{n}" not in args.points:
            continue
        sg = torch.Generator().manual_seed(2)

        def sample():
            with torch.no_grad():
                ids = torch.zeros((1, n), dtype=torch.long)
                state = None
                for _ in range(256):
                    logits, state = model(ids, state)
                    p = torch.softmax(logits.float() / 1.0, dim=-1)
                    ids = torch.multinomial(p, 1, generator=sg).reshape(1, n)

        report(f"sample_b{n}", "char/s", 256.0 * n, *measure(sample, args.reps, warmup=1))


# ----------------------------------------------------------------------------------- training

def corpus_files(root, exclude=("*.dat",)):
    if os.path.isfile(root):
        return [os.path.realpath(root)]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            p = os.path.join(dirpath, name)
            if name.startswith(".") or any(fnmatch.fnmatch(name, e) for e in exclude):
                continue
            if not os.path.isfile(p) or os.path.getsize(p) == 0:
                continue
            found.append((os.path.relpath(p, root), p))
    found.sort(key=lambda rp: rp[0].encode())
    out, seen = [], set()
    for _, p in found:
        c = os.path.realpath(p)
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def load_split(root, val_fraction):
    train, val, everything = [], [], []
    for path in corpus_files(root):
        with open(path, "rb") as f:
            data = f.read()
        if not data.endswith(b"\n"):
            data += b"\n"
        everything.append(data)
        cut = len(data)
        if val_fraction > 0:
            nominal = max(1, int(len(data) * (1.0 - val_fraction)))
            nl = data.find(b"\n", nominal - 1)
            if nl != -1 and nl + 1 < len(data):
                cut = nl + 1
        train.append(data[:cut])
        val.append(data[cut:])
    dec = lambda parts: b"".join(parts).decode("utf-8")
    return dec(train), dec(val), dec(everything)


def sequence_nll(model, ids, streams, seq_len):
    n = len(ids)
    S = max(1, min(streams, n - 1))
    L = (n - 1) // S
    data = torch.tensor(ids[: S * L + 1], dtype=torch.long)
    rows = torch.stack([data[s * L: s * L + L + 1] for s in range(S)], dim=1)  # [L+1, S]
    nats, chars, state = 0.0, 0, None
    model.eval()
    with torch.no_grad():
        for t0 in range(0, L, seq_len):
            T = min(seq_len, L - t0)
            logits, state = model(rows[t0: t0 + T], state)
            nats += F.cross_entropy(logits.float(), rows[t0 + 1: t0 + T + 1].reshape(-1),
                                    reduction="sum").item()
            chars += T * S
    model.train()
    return nats, chars


def train(args):
    torch.manual_seed(args.seed)
    t_start = time.time()
    train_text, val_text, all_text = load_split(args.data, args.val_fraction)
    chars = sorted(set(all_text))
    index = {c: i for i, c in enumerate(chars)}
    train_ids = [index[c] for c in train_text]
    val_ids = [index[c] for c in val_text]
    S, T = args.streams, args.seq_len
    L = (len(train_ids) - 1) // S
    C = L // T
    data = torch.tensor(train_ids, dtype=torch.long)
    model = CharRnn(len(chars), args.embed, args.hidden, args.layers, args.dropout, args.cell)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.steps if args.steps > 0 else args.epochs * C
    print(json.dumps({"impl": "torch", "event": "start", "vocab": len(chars),
                      "train_chars": len(train_ids), "val_chars": len(val_ids),
                      "chunks_per_epoch": C, "steps": steps,
                      "params": sum(p.numel() for p in model.parameters()),
                      "blas": blas_library()}), flush=True)
    state, step, losses = None, 0, []
    t_train = time.time()
    while step < steps:
        c = step % C
        if c == 0:
            state = None  # each epoch starts its streams from zeros
        starts = [s * L + c * T for s in range(S)]
        x = torch.stack([data[b: b + T] for b in starts], dim=1)  # [T, S]
        y = torch.stack([data[b + 1: b + T + 1] for b in starts], dim=1)
        if args.decay_steps > 0:
            lr = args.lr_min + (args.lr - args.lr_min) * (
                1 + math.cos(math.pi * min(step, args.decay_steps) / args.decay_steps)) / 2
        else:
            lr = args.lr
        for group in opt.param_groups:
            group["lr"] = lr
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = F.cross_entropy(logits, y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % args.log_every == 0 or step == steps:
            recent = losses[-args.log_every:]
            print(json.dumps({"impl": "torch", "step": step, "bpc": sum(recent) / len(recent) /
                              math.log(2), "lr": lr, "elapsed_s": time.time() - t_train}),
                  flush=True)
    nats, n = sequence_nll(model, val_ids, S, T)
    print(json.dumps({"impl": "torch", "event": "done", "steps": steps,
                      "val_bpc": nats / n / math.log(2), "val_chars": n,
                      "train_s": time.time() - t_train, "total_s": time.time() - t_start}),
          flush=True)


def load_kiln_checkpoint(path):
    """A Kiln rnn checkpoint (safetensors) as (CharRnn, vocabulary code points)."""
    import struct
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    params = json.loads(header["__metadata__"]["kiln.params"])

    def tensor(key):
        meta = header[key]
        a, b = meta["data_offsets"]
        dtype = {"F32": np.float32, "I32": np.int32}[meta["dtype"]]
        return torch.from_numpy(np.frombuffer(blob[a:b], dtype=dtype).reshape(meta["shape"]).copy())

    vocab = tensor("vocab").tolist()
    model = CharRnn(len(vocab), params["embed"], params["hidden"], params["layers"],
                    cell=params["cell"])
    model.load_state_dict({k: tensor(k) for k in header if k not in ("__metadata__", "vocab")})
    return model, vocab


def score(args):
    model, vocab = load_kiln_checkpoint(args.model)
    index = {c: i for i, c in enumerate(vocab)}
    with open(args.text, encoding="utf-8") as f:
        ids = [index[ord(c)] for c in f.read() if ord(c) in index]
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        model.to(dtype)
        nats, chars = sequence_nll(model, ids, 1, 128)
        print(json.dumps({"impl": "torch", "model": args.model, "text": args.text, "dtype": name,
                          "bpc": nats / chars / math.log(2), "chars": chars}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--reps", type=int, default=7)
    sp.add_argument("--points", default="train,sample_b1,sample_b32")
    sp.add_argument("--sample-dtype", default="f32", choices=["f32", "bf16", "qint8"])
    cp = sub.add_parser("score")
    cp.add_argument("--threads", type=int, default=2)
    cp.add_argument("--model", required=True)
    cp.add_argument("--text", required=True)
    tp = sub.add_parser("train")
    tp.add_argument("--threads", type=int, default=2)
    tp.add_argument("--data", default="/usr/share/games/fortunes")
    tp.add_argument("--val-fraction", type=float, default=0.05)
    tp.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    tp.add_argument("--embed", type=int, default=64)
    tp.add_argument("--hidden", type=int, default=256)
    tp.add_argument("--layers", type=int, default=2)
    tp.add_argument("--dropout", type=float, default=0.0)
    tp.add_argument("--seq-len", type=int, default=128)
    tp.add_argument("--streams", type=int, default=32)
    tp.add_argument("--lr", type=float, default=3e-3)
    tp.add_argument("--lr-min", type=float, default=3e-4)
    tp.add_argument("--decay-steps", type=int, default=597)
    tp.add_argument("--clip", type=float, default=5.0)
    tp.add_argument("--epochs", type=int, default=1)
    tp.add_argument("--steps", type=int, default=0, help="0: epochs x chunks per epoch")
    tp.add_argument("--seed", type=int, default=1)
    tp.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "speed":
        speed(args)
    elif args.mode == "score":
        score(args)
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
