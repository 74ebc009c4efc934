"""PyTorch reference of transformer/train: the same GPT, optimiser, schedule, batches and steps.

  build/bench/bench_transformer_bench tokens --data /usr/share/games/fortunes --vocab 4096 \
      --val 0.05 --out /tmp/fortunes_tokens.safetensors
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/peers/gpt_train.py /tmp/fortunes_tokens.safetensors \
      [--steps 600 --batch 16 --context 128 --layers 4 --heads 4 --dim 128 --lr 2e-3 \
       --min-lr 2e-4 --warmup 60 --wd 0.1 --clip 1.0 --seed 42]

The token ids come from Kiln's own pipeline (same corpus split and BPE tokenizer), so both train
on identical data. Model: GPT-2 (learned positions, pre-LN, GELU tanh, tied head, biases), init
N(0, 0.02) with the residual projections N(0, 0.02/sqrt(2 layers)). Examples: non-overlapping
windows of context + 1 tokens (window i starts at i * context), shuffled each epoch (seeded; the
order differs from Kiln's, the distribution does not). AdamW (betas 0.9/0.95, eps 1e-8), weight
decay on the matrices except the position embedding; lr warm-up from 0 then cosine to min_lr
over `steps`; gradient norm clipped to 1. Prints the validation loss over all validation windows
at the end (and every --eval-every steps).
"""
import argparse
import json
import math
import struct
import time

import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "I32"
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=torch.int32).long()
    return out


class Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln_1 = torch.nn.LayerNorm(d)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.c_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.mlp_proj = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.h)
        s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        a = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(a)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(torch.nn.Module):
    def __init__(self, vocab, ctx, layers, heads, d):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, d)
        self.wpe = torch.nn.Embedding(ctx, d)
        self.h = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(d)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.zeros_(p)
            elif "ln" in name:
                torch.nn.init.ones_(p)
            elif name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                torch.nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))
            else:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for blk in self.h:
            x = blk(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def windows(ids, ctx):
    n = (len(ids) - 1 - ctx) // ctx + 1
    return torch.stack([ids[i * ctx:i * ctx + ctx + 1] for i in range(n)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tokens")
    for name, default in (("steps", 600), ("batch", 16), ("context", 128), ("layers", 4),
                          ("heads", 4), ("dim", 128), ("warmup", 60), ("seed", 42),
                          ("eval-every", 0), ("threads", 2)):
        ap.add_argument("--" + name, type=int, default=default)
    for name, default in (("lr", 2e-3), ("min-lr", 2e-4), ("wd", 0.1), ("clip", 1.0)):
        ap.add_argument("--" + name, type=float, default=default)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    toks = load_safetensors(a.tokens)
    train, val = windows(toks["train"], a.context), windows(toks["val"], a.context)
    vocab = int(max(toks["train"].max(), toks["val"].max())) + 1
    vocab = max(vocab, 4096)
    model = GPT(vocab, a.context, a.layers, a.heads, a.dim)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wpe" not in n]
    plain = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": plain, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < a.warmup:
            return a.lr * step / a.warmup
        if step >= a.steps:
            return a.min_lr
        p = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1 + math.cos(math.pi * p))

    def evaluate():
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(val), 16):
                w = val[s:s + 16]
                logits = model(w[:, :-1])
                total += F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1),
                                         reduction="sum").item()
                n += w[:, 1:].numel()
        model.train()
        return total / n

    gen = torch.Generator().manual_seed(a.seed)
    order, pos, epoch = torch.randperm(len(train), generator=gen), 0, 0
    t0 = time.time()
    for step in range(a.steps):
        if pos + a.batch > len(train):
            order, pos, epoch = torch.randperm(len(train), generator=gen), 0, epoch + 1
        w = train[order[pos:pos + a.batch]]
        pos += a.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = F.cross_entropy(model(w[:, :-1]).reshape(-1, vocab), w[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}, {time.time() - t0:.0f} s", flush=True)
        if a.eval_every and (step + 1) % a.eval_every == 0 and step + 1 < a.steps:
            print(f"step {step + 1}: val_loss {evaluate():.4f}", flush=True)
    v = evaluate()
    print(f"final: step {a.steps}, val_loss {v:.4f}, val_ppl {math.exp(v):.2f}, "
          f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
