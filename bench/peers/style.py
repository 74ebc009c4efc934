#!/usr/bin/env python3
"""PyTorch peer of Kiln's style_transfer `stylize` (Gatys optimisation) at 256x256.

The same optimisation as `kiln run configs/style-bench.toml`: the built-in "random" feature net
(4 pyramid levels; per level conv 5x5 3->32 + ReLU, conv 3x3 32->64 + ReLU; no biases; input
x - 0.5; levels by 2x2 average pooling), content layer s2_2, style layers s0_1 .. s3_2 (equal
weights), relative losses (content mse / mean(Fc^2), style mse(G, A) / mean(A^2), G = F F^T / hw),
content_weight 1, style_weight 1000, init from the content image, pixels optimised by Adam
(lr 0.02, clamped to [0, 1] after each step) or L-BFGS (torch.optim.LBFGS, history 10, a fixed
step lr = 1 per iteration, i.e. line_search_fn=None and max_iter=1, as Kiln's line_search="none").

Weights are N(0, 2/fan_in) from torch's generator (Kiln draws them from Philox): the values differ,
the shapes and the work do not. Images: the PNGs of configs/style (read with numpy+zlib).

    OMP_NUM_THREADS=2 /usr/bin/python3 bench/peers/style.py --iterations 30 [--optimizer lbfgs]

Prints one JSON line: {"peer": "torch", "optimizer": ..., "size": 256, "iterations_per_second": ...}
"""
import argparse
import json
import os
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_png_rgb(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype == 2, "only 8-bit RGB PNGs (as make_images.py writes)"
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * 3
    img = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        out = np.zeros(stride, np.int32)
        for x in range(stride):
            a = out[x - 3] if x >= 3 else 0
            b = prev[x]
            c = prev[x - 3] if x >= 3 else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[x] = (line[x] + p) & 255
        img[y] = out
        prev = out
    return torch.from_numpy(img.reshape(h, w, 3).astype(np.float32) / 255).permute(2, 0, 1)[None]


class RandomNet:
    def __init__(self, levels=4, width=64, seed=7):
        g = torch.Generator().manual_seed(seed)
        self.w1, self.w2 = [], []
        c1 = width // 2
        for _ in range(levels):
            self.w1.append(torch.randn(c1, 3, 5, 5, generator=g) * (2.0 / 75) ** 0.5)
            self.w2.append(torch.randn(width, c1, 3, 3, generator=g) * (2.0 / (c1 * 9)) ** 0.5)
        self.levels = levels

    def __call__(self, x):
        out = {}
        h = x - 0.5
        for l in range(self.levels):
            if l > 0:
                h = F.avg_pool2d(h, 2)
            a = F.relu(F.conv2d(h, self.w1[l], padding=2))
            b = F.relu(F.conv2d(a, self.w2[l], padding=1))
            out[f"s{l}_1"], out[f"s{l}_2"] = a, b
        return out


def gram(f):
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    content = read_png_rgb(os.path.join(ROOT, "configs/style/content/landscape.png"))
    style = read_png_rgb(os.path.join(ROOT, "configs/style/style/waves.png"))
    content = F.interpolate(content, size=(args.size, args.size), mode="bilinear", align_corners=False)
    style = F.interpolate(style, size=(args.size, args.size), mode="bilinear", align_corners=False)
    net = RandomNet()
    style_layers = [f"s{l}_{k}" for l in range(4) for k in (1, 2)]
    content_layer = "s2_2"
    with torch.no_grad():
        sf = net(style)
        targets = {l: gram(sf[l]) for l in style_layers}
        norms = {l: 1.0 / targets[l].pow(2).mean().item() for l in style_layers}
        cf = net(content)[content_layer]
        cnorm = 1.0 / cf.pow(2).mean().item()
    x = content.clone().requires_grad_(True)

    def loss_fn():
        f = net(x)
        c = (f[content_layer] - cf).pow(2).mean() * cnorm
        s = sum((gram(f[l]) - targets[l]).pow(2).mean() * (norms[l] / len(style_layers))
                for l in style_layers)
        return c + 1000.0 * s

    if args.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=0.02)

        def step():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            return loss.item()
    else:
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=10, line_search_fn=None)

        def closure():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        def step():
            return opt.step(closure).item()

    first = None
    for _ in range(args.warmup):
        loss = step()
        first = loss if first is None else first
    t0 = time.perf_counter()
    last = 0.0
    for _ in range(args.iterations):
        last = step()
    dt = time.perf_counter() - t0
    print(json.dumps({"peer": "torch", "torch": torch.__version__, "optimizer": args.optimizer,
                      "size": args.size, "threads": args.threads, "iterations": args.iterations,
                      "seconds": dt, "iterations_per_second": args.iterations / dt,
                      "first_loss": first, "last_loss": last}))


if __name__ == "__main__":
    sys.exit(main())
