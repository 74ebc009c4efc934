"""GPT-2-small-shape inference in PyTorch: the peer of bench/transformer_bench.cpp.

Run with Debian's PyTorch:
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/peers/gpt2.py [--modes fp32,bf16w] [--reps 3]

Workload B5 of the peers README: nanoGPT-style GPT-2 (12 layers, 12 heads, width 768, vocab
50257, context 1024; pre-LN, biases, GELU(tanh), lm_head tied to wte; init N(0, 0.02), c_proj
N(0, 0.02 / sqrt(24)); 124,439,808 parameters), random weights. KV cache preallocated
[B, 12, 1024, 64] per layer for K and V.
  prefill: batch 1, a 128-token prompt, causal mask, logits of the last position only;
           tokens/s = 128 / t
  decode:  after an untimed prefill, 32 greedy (argmax) steps at positions 128..159, at batch 1
           and at batch 8 (8 different prompts); tokens/s = B * 32 / t
Modes: fp32; bf16w = model.to(bfloat16), cache in bf16 too.
--prefill-only skips decode. Prints one line per measurement: "gpt2 <mode> <metric> <median tok/s> [<worst>-<best>]".
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

L, H, D, V, CTX = 12, 12, 768, 50257, 1024
HD = D // H


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(D)
        self.c_attn = torch.nn.Linear(D, 3 * D)
        self.c_proj = torch.nn.Linear(D, D)
        self.ln_2 = torch.nn.LayerNorm(D)
        self.c_fc = torch.nn.Linear(D, 4 * D)
        self.mlp_proj = torch.nn.Linear(4 * D, D)

    def forward(self, x, k_cache, v_cache, start):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = (z.view(b, t, H, HD).transpose(1, 2) for z in (q, k, v))
        k_cache[:b, :, start:start + t] = k
        v_cache[:b, :, start:start + t] = v
        kk, vv = k_cache[:b, :, :start + t], v_cache[:b, :, :start + t]
        s = (q @ kk.transpose(-1, -2)) * (1.0 / math.sqrt(HD))
        if t > 1:
            mask = torch.ones(t, start + t, dtype=torch.bool).tril(diagonal=start)
            s = s.masked_fill(~mask, float("-inf"))
        a = (torch.softmax(s.float(), dim=-1).to(vv.dtype) @ vv).transpose(1, 2).reshape(b, t, D)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(V, D)
        self.wpe = torch.nn.Embedding(CTX, D)
        self.h = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(D)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.zeros_(p)
            elif "ln" in name:
                torch.nn.init.ones_(p)
            elif name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                torch.nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
            else:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids, caches, start, last_only=True):
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(start, start + t))
        for blk, (kc, vc) in zip(self.h, caches):
            x = blk(x, kc, vc, start)
        if last_only:
            x = x[:, -1]
        return F.linear(self.ln_f(x), self.wte.weight)


def timed(fn, reps, inner=1):
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t0) / inner)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="fp32,bf16w")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill-only", action="store_true",
                    help="skip decode (fp32 decode on a reference BLAS takes very long)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT().eval()
    n = sum(p.numel() for p in model.parameters())
    assert n == 124439808, n
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, V, (8, 128), generator=g)
    for mode in args.modes.split(","):
        dt = torch.bfloat16 if mode == "bf16w" else torch.float32
        m = model.to(dt)
        caches = [(torch.zeros(8, H, CTX, HD, dtype=dt), torch.zeros(8, H, CTX, HD, dtype=dt))
                  for _ in range(L)]
        with torch.no_grad():
            ts = timed(lambda: m(prompts[:1], caches, 0), args.reps)
            rate = [128 / t for t in ts]
            print(f"gpt2 {mode} prefill_b1_t128 {statistics.median(rate):.1f} "
                  f"[{min(rate):.1f}-{max(rate):.1f}]", flush=True)
            for b in () if args.prefill_only else (1, 8):
                def decode():
                    logits = m(prompts[:b], caches, 0)
                    tok = logits.argmax(-1, keepdim=True)
                    t0 = time.perf_counter()
                    for pos in range(128, 160):
                        tok = m(tok, caches, pos).argmax(-1, keepdim=True)
                    decode.t = time.perf_counter() - t0
                rates = []
                decode()
                for _ in range(args.reps):
                    decode()
                    rates.append(b * 32 / decode.t)
                print(f"gpt2 {mode} decode_b{b} {statistics.median(rates):.1f} "
                      f"[{min(rates):.1f}-{max(rates):.1f}]", flush=True)
        model = model.float()


if __name__ == "__main__":
    main()
