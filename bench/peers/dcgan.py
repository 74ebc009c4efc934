"""The DCGAN workload (B1/B2 of /work/shared/peers/README.md) in PyTorch: Kiln's peer for speed
and for sample quality. Run with Debian's PyTorch (/usr/bin/python3); never a Kiln dependency.

  # speed: generator inference at batch 64 (img/s) and the training step at batch 64 (step/s)
  /usr/bin/python3 bench/peers/dcgan.py bench --threads 1
  # quality: train as configs/gan-fashion.toml trains Kiln's model, then write samples (PNG +
  # manifest.jsonl with the requested labels) that `kiln`'s eval/evaluate stage can read
  /usr/bin/python3 bench/peers/dcgan.py train --out runs/dcgan-torch --conditional \
      --ngf 32 --ndf 32 --epochs 2 --count 10000

Architecture, initialisation, optimiser and loop are those of Kiln's gan plugin
(plugins/gan/model.hpp): G = ConvT(nz(+embed)->4ngf,k7) BN ReLU, ConvT(4ngf->2ngf,k4,s2,p1) BN
ReLU, ConvT(2ngf->ngf,k4,s2,p1) BN ReLU, ConvT(ngf->1,k3,p1) tanh; D = Conv(1->ndf,k4,s2,p1)
LReLU(.2), Conv(ndf->2ndf,k4,s2,p1) BN LReLU, Conv(2ndf->4ndf,k3,s2,p1) BN LReLU,
Conv(4ndf->1,k4) [+ projection <embed(y), sum_hw h3>]; bias-free convs; examples/dcgan init;
Adam(lr 2e-4, betas (0.5, 0.999)) for each; non-saturating BCE (the workload's Sigmoid + BCELoss,
here as BCE-with-logits, the same function); EMA of G with decay min(0.999, (1+t)/(10+t)) over
parameters and BN statistics; samples from the EMA generator in eval mode. The speed benchmark
uses the unconditional workload exactly as defined (nz 100, ngf = ndf = 64).
"""
import argparse
import copy
import gzip
import json
import os
import statistics
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class G(nn.Module):
    def __init__(self, nz, ngf, classes=0, embed=16):
        super().__init__()
        self.classes = classes
        inp = nz + (embed if classes else 0)
        self.convt1 = nn.ConvTranspose2d(inp, 4 * ngf, 7, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(4 * ngf)
        self.convt2 = nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * ngf)
        self.convt3 = nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ngf)
        self.convt4 = nn.ConvTranspose2d(ngf, 1, 3, 1, 1, bias=False)
        if classes:
            self.embed = nn.Embedding(classes, embed)

    def forward(self, z, y=None):
        if self.classes:
            z = torch.cat([z, self.embed(y)], 1)
        h = z.view(z.size(0), -1, 1, 1)
        h = F.relu(self.bn1(self.convt1(h)))
        h = F.relu(self.bn2(self.convt2(h)))
        h = F.relu(self.bn3(self.convt3(h)))
        return torch.tanh(self.convt4(h))


class D(nn.Module):
    def __init__(self, ndf, classes=0):
        super().__init__()
        self.classes = classes
        self.conv1 = nn.Conv2d(1, ndf, 4, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * ndf)
        self.conv3 = nn.Conv2d(2 * ndf, 4 * ndf, 3, 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * ndf)
        self.conv4 = nn.Conv2d(4 * ndf, 1, 4, 1, 0, bias=False)
        if classes:
            self.embed = nn.Embedding(classes, 4 * ndf)

    def forward(self, x, y=None):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.bn2(self.conv2(h)), 0.2)
        h = F.leaky_relu(self.bn3(self.conv3(h)), 0.2)
        logit = self.conv4(h).view(-1)
        if self.classes:
            logit = logit + (h.sum((2, 3)) * self.embed(y)).sum(1)
        return logit


def dcgan_init(m, is_d):
    for name, p in m.named_parameters():
        if name.startswith("bn"):
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 1.0, 0.02)
        elif name.startswith("embed"):
            if is_d:
                nn.init.normal_(p, 0.0, 0.02)
        else:
            nn.init.normal_(p, 0.0, 0.02)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_png(path, img):
    """8-bit greyscale PNG of an [H, W] uint8 array."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def train_step(g, d, opt_g, opt_d, real, y, z):
    """One examples/dcgan step (non-saturating BCE); returns (loss_d, loss_g)."""
    n = real.size(0)
    ones, zeros = torch.ones(n), torch.zeros(n)
    opt_d.zero_grad()
    d_real = d(real, y)
    fake = g(z, y)
    d_fake = d(fake.detach(), y)
    loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + \
        F.binary_cross_entropy_with_logits(d_fake, zeros)
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad()
    loss_g = F.binary_cross_entropy_with_logits(d(fake, y), ones)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


def timed(fn, min_time=0.05, samples=7, warmup=2):
    """Median calls/s over `samples` samples of >= min_time each (the peers' protocol), worst,
    best, and process CPU seconds per call (robust to a shared machine's load)."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = max(1, int(min_time / max(one, 1e-9)))
    rates = []
    c0 = time.process_time()
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        rates.append(inner / (time.perf_counter() - t0))
    cpu = (time.process_time() - c0) / (samples * inner)
    return statistics.median(rates), min(rates), max(rates), cpu


def cmd_bench(a):
    torch.manual_seed(0)
    g, d = G(100, 64), D(64)
    dcgan_init(g, False)
    dcgan_init(d, True)
    gen = torch.Generator().manual_seed(1)
    out = {}
    g.eval()
    z = torch.randn(64, 100, generator=gen)
    # --g-dtype: the generator's inference in f32, under torch.autocast('cpu', bfloat16), or
    # with the model and z in bfloat16. A mode PyTorch cannot run is reported, not timed.
    gi = copy.deepcopy(g)
    if a.g_dtype == "bf16":
        gi, zi = gi.to(torch.bfloat16), z.to(torch.bfloat16)
    else:
        zi = z

    def infer():
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16,
                                             enabled=a.g_dtype == "autocast"):
            gi(zi)

    out["G_dtype"] = a.g_dtype
    try:
        med, lo, hi, cpu = timed(infer)
        out["G_infer_b64_img_s"] = [64 * med, 64 * lo, 64 * hi]
        out["G_infer_b64_cpu_s"] = cpu
    except RuntimeError as e:
        out["G_infer_error"] = str(e).splitlines()[0]
    g.train()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(64, 1, 28, 28, generator=gen) * 2 - 1
    zt = torch.randn(64, 100, generator=gen)
    med, lo, hi, cpu = timed(lambda: train_step(g, d, opt_g, opt_d, real, None, zt),
                             samples=a.samples)
    out["train_step_b64_step_s"] = [med, lo, hi]
    out["train_step_b64_cpu_s"] = cpu
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))


def cmd_train(a):
    torch.manual_seed(a.seed)
    classes = 10 if a.conditional else 0
    g, d = G(a.nz, a.ngf, classes, a.embed), D(a.ndf, classes)
    dcgan_init(g, False)
    dcgan_init(d, True)
    ema = G(a.nz, a.ngf, classes, a.embed)
    ema.load_state_dict(g.state_dict())
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    x_all = torch.from_numpy(images.astype(np.float32) / 127.5 - 1).unsqueeze(1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    gen = torch.Generator().manual_seed(a.seed)
    per_epoch = len(x_all) // a.batch
    total = a.epochs * per_epoch if a.steps == 0 else a.steps
    t_start, step = time.time(), 0
    ema_t = 0
    while step < total:
        order = torch.randperm(len(x_all), generator=gen)
        for b in range(per_epoch):
            if step >= total:
                break
            idx = order[b * a.batch:(b + 1) * a.batch]
            z = torch.randn(a.batch, a.nz, generator=gen)
            ld, lg = train_step(g, d, opt_g, opt_d, x_all[idx], y_all[idx], z)
            with torch.no_grad():
                dec = min(0.999, (1 + ema_t) / (10 + ema_t))
                ema_t += 1
                es, gs = ema.state_dict(), g.state_dict()
                for k, v in es.items():
                    if v.dtype.is_floating_point:
                        v.mul_(dec).add_(gs[k], alpha=1 - dec)
                    else:
                        v.copy_(gs[k])
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{total} loss_d {ld:.4f} loss_g {lg:.4f} "
                      f"{step / (time.time() - t_start):.2f} step/s", flush=True)
    train_s = time.time() - t_start
    ema.eval()
    out = os.path.join(a.out, "samples")
    os.makedirs(out, exist_ok=True)
    lines = []
    with torch.no_grad():
        for b0 in range(0, a.count, 100):
            n = min(100, a.count - b0)
            z = torch.randn(n, a.nz, generator=gen)
            y = torch.arange(b0, b0 + n) % 10
            x = ema(z, y if classes else None)
            pix = ((x.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor().to(torch.uint8).numpy()
            for r in range(n):
                name = f"samples/{b0 + r:06d}.png"
                write_png(os.path.join(a.out, name), pix[r, 0])
                info = {"label": str(int(y[r]))} if classes else {}
                lines.append(json.dumps({"index": b0 + r, "path": name, "info": info}))
    with open(os.path.join(a.out, "manifest.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    torch.save(ema.state_dict(), os.path.join(a.out, "generator_ema.pt"))
    print(json.dumps({"steps": total, "train_seconds": round(train_s, 1),
                      "samples": a.count, "out": a.out}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--samples", type=int, default=7)
    b.add_argument("--g-dtype", default="f32", choices=["f32", "autocast", "bf16"])
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=7)
    t.add_argument("--nz", type=int, default=100)
    t.add_argument("--ngf", type=int, default=64)
    t.add_argument("--ndf", type=int, default=64)
    t.add_argument("--embed", type=int, default=16)
    t.add_argument("--conditional", action="store_true")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: epochs)")
    t.add_argument("--count", type=int, default=10000)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    {"bench": cmd_bench, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
