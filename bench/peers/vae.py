#!/usr/bin/python3
"""PyTorch peer of the Kiln vae plugin (workload B3 of ../shared/peers/README.md).

Same architecture, parameter names, initialisation (PyTorch's defaults, which Kiln's nn layers
reproduce in distribution), loss, optimiser, batch and epochs as configs/vae-fashion.toml:

  encoder: Conv(1->32,k4,s2,p1)+ReLU -> Conv(32->64,k4,s2,p1)+ReLU -> flatten -> Linear(3136->64)
           = [mu | logvar]
  decoder: Linear(32->3136)+ReLU -> 64x7x7 -> ConvT(64->32,k4,s2,p1)+ReLU -> ConvT(32->1,k4,s2,p1)
  loss:    BCE-with-logits summed over pixels + beta * KL, divided by the batch; Adam lr 1e-3

  /usr/bin/python3 bench/peers/vae.py train [--epochs 10] [--exclude-class -1] [--seed 42]
      trains on Fashion-MNIST (shuffled, last partial batch dropped, as Kiln's loader) and prints
      the test-set negative ELBO (nats/image, one posterior draw per image) after each epoch, and
      with --exclude-class the AUROC of that class by negative ELBO on the whole test set.
  /usr/bin/python3 bench/peers/vae.py eval models/vae-fashion.safetensors
      loads a checkpoint of Kiln's vae plugin (safetensors, same parameter names) and prints its
      test-set negative ELBO as PyTorch computes it.
  /usr/bin/python3 bench/peers/vae.py bench [--threads 1] [--reps 7]
      training step at batch 128 and decode (sigmoid(decoder(z)), no_grad) at batch 256 on
      synthetic data, one JSON line each (median, worst, best), as bench/vae_bench.cpp.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Encoder(nn.Module):
    def __init__(self, channels, latent, image, variational=True):
        super().__init__()
        c, h, w = image
        self.convs = nn.ModuleList()
        for out in channels:
            self.convs.append(nn.Conv2d(c, out, 4, 2, 1))
            c = out
        f = 2 ** len(channels)
        self.fc = nn.Linear(c * (h // f) * (w // f), (2 if variational else 1) * latent)

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.fc(x.flatten(1))


class Decoder(nn.Module):
    def __init__(self, channels, latent, image):
        super().__init__()
        c, h, w = image
        f = 2 ** len(channels)
        self.top = (channels[-1], h // f, w // f)
        self.fc = nn.Linear(latent, channels[-1] * (h // f) * (w // f))
        self.deconvs = nn.ModuleList()
        for i in range(len(channels) - 1, -1, -1):
            out = channels[i - 1] if i > 0 else c
            self.deconvs.append(nn.ConvTranspose2d(channels[i], out, 4, 2, 1))

    def forward(self, z):
        h = F.relu(self.fc(z)).view(z.shape[0], *self.top)
        for i, d in enumerate(self.deconvs):
            h = d(h)
            if i + 1 < len(self.deconvs):
                h = F.relu(h)
        return h  # logits


class VAE(nn.Module):
    def __init__(self, channels=(32, 64), latent=32, image=(1, 28, 28)):
        super().__init__()
        self.latent = latent
        self.encoder = Encoder(channels, latent, image)
        self.decoder = Decoder(channels, latent, image)

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def terms(self, x, eps):
        """Per-example reconstruction (nats) and KL terms, and the logits."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)
        return recon, kl, logits


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).view(*dims)


def fashion(split, root="/usr/share/datasets/fashion-mnist"):
    p = "train" if split == "train" else "t10k"
    x = read_idx(f"{root}/{p}-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    y = read_idx(f"{root}/{p}-labels-idx1-ubyte.gz").long()
    return x, y


@torch.no_grad()
def test_scores(model, x, gen):
    out = []
    for i in range(0, x.shape[0], 500):
        xb = x[i:i + 500]
        eps = torch.randn(xb.shape[0], model.latent, generator=gen)
        recon, kl, _ = model.terms(xb, eps)
        out.append(recon + kl)
    return torch.cat(out)


def auroc(scores, positive):
    """Mann-Whitney U with tie-averaged ranks (as the plugin's score task)."""
    order = torch.argsort(scores.double())
    s = scores.double()[order]
    ranks = torch.empty_like(s)
    i = 0
    n = s.shape[0]
    while i < n:
        j = i
        while j < n and s[j] == s[i]:
            j += 1
        ranks[i:j] = (i + 1 + j) / 2.0
        i = j
    pos = positive[order]
    n_pos = pos.sum().item()
    n_neg = n - n_pos
    return (ranks[pos].sum().item() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = fashion("train")
    if args.exclude_class >= 0:
        x = x[y != args.exclude_class]
    xt, yt = fashion("test")
    xt_in = xt[yt != args.exclude_class] if args.exclude_class >= 0 else xt
    gen = torch.Generator().manual_seed(args.seed + 1)
    batch = 128
    t0 = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for b in range(x.shape[0] // batch):
            xb = x[perm[b * batch:(b + 1) * batch]]
            eps = torch.randn(batch, model.latent, generator=gen)
            recon, kl, _ = model.terms(xb, eps)
            loss = (recon + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        nelbo = test_scores(model, xt_in, torch.Generator().manual_seed(0)).mean().item()
        print(json.dumps({"impl": "pytorch", "epoch": epoch + 1, "test_nelbo": round(nelbo, 3),
                          "seconds": round(time.time() - t0, 1)}), flush=True)
    if args.exclude_class >= 0:
        s = test_scores(model, xt, torch.Generator().manual_seed(0))
        print(json.dumps({"impl": "pytorch", "exclude_class": args.exclude_class,
                          "auroc": round(auroc(s, yt == args.exclude_class), 4)}), flush=True)
    if args.save:
        torch.save(model.state_dict(), args.save)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[8 + n + a:8 + n + b]),
                                  dtype=torch.float32).view(*v["shape"])
    return out


def evaluate(args):
    torch.set_num_threads(args.threads)
    model = VAE()
    model.load_state_dict(load_safetensors(args.file))
    xt, _ = fashion("test")
    nelbo = test_scores(model, xt, torch.Generator().manual_seed(0)).mean().item()
    print(json.dumps({"impl": "pytorch", "checkpoint": args.file, "test_nelbo": round(nelbo, 3)}))


def measure(name, unit, per_call, reps, f):
    for _ in range(3):
        f()
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            f()
        if time.perf_counter() - t0 >= 0.2:
            break
        inner *= 2
    rates, cpu_rates = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(inner):
            f()
        rates.append(per_call * inner / (time.perf_counter() - t0))
        cpu_rates.append(per_call * inner / (time.process_time() - c0))
    rates.sort()
    cpu_rates.sort()
    print(json.dumps({"impl": "pytorch", "metric": name, "unit": unit,
                      "median": rates[len(rates) // 2], "worst": rates[0], "best": rates[-1],
                      "per_cpu_second": cpu_rates[len(cpu_rates) // 2],
                      "threads": torch.get_num_threads()}), flush=True)


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = VAE()
    gen = torch.Generator().manual_seed(1)
    if args.what in ("both", "train"):
        x = torch.rand(128, 1, 28, 28, generator=gen)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            eps = torch.randn(128, model.latent, generator=gen)
            recon, kl, _ = model.terms(x, eps)
            loss = (recon + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        measure("train_step_b128", "step/s", 1.0, args.reps, step)
    if args.what in ("both", "decode"):
        z = torch.randn(256, model.latent, generator=gen)

        @torch.no_grad()
        def decode():
            torch.sigmoid(model.decoder(z))
        measure("decode_b256", "img/s", 256.0, args.reps, decode)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["train", "bench", "eval"])
    ap.add_argument("file", nargs="?", default="")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--exclude-class", type=int, default=-1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--what", choices=["both", "train", "decode"], default="both")
    ap.add_argument("--save", default="")
    args = ap.parse_args()
    {"train": train, "bench": bench, "eval": evaluate}[args.mode](args)


if __name__ == "__main__":
    main()
