#!/usr/bin/python3
"""PyTorch peer of the Kiln diffusion plugin (workload B6 of ../shared/peers/README.md).

The U-Net has the same layout, parameter names and zero-initialised layers as
plugins/diffusion/unet.cpp, so weights move between the two (tests/fixtures/gen/diffusion_fixture.py
uses this module to write the parity fixture):

  time: sinusoidal(ch) -> Linear(ch, 4ch) -> SiLU -> Linear(4ch, 4ch); + class embedding (C + 1 rows)
  conv_in 3x3; per level: res_blocks ResBlocks (+ attention at the lowest level), stride-2 conv3x3
  down; middle ResBlock-Attn-ResBlock; per level up: res_blocks + 1 ResBlocks on the concatenated
  skip, nearest x2 + conv3x3; GroupNorm-SiLU-conv3x3 out.
  ResBlock: GN-SiLU-conv3x3, + Linear(SiLU(emb)), GN-SiLU-conv3x3 (zero init), 1x1 skip when the
  channels change. Attention: GN, Linear qkv, single head, Linear proj (zero init), residual.

B6 is channels 64, channel_mult (1, 2, 4), res_blocks 2, GroupNorm(32), at 28x28x1 (15.72 M params).

  /usr/bin/python3 bench/peers/ddpm.py bench [--threads 2] [--reps 5] [--bf16] [--what both]
      one denoising step (eps prediction + the ancestral update, no_grad, t = 500) and one training
      step (t ~ U{0..999}, eps ~ N(0,1), MSE, Adam lr 2e-4) at batch 64 on synthetic data; one
      JSON line each (median, worst, best seconds).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim):
    half = dim // 2
    scale = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(-scale * torch.arange(half, dtype=torch.float64)).to(torch.float32)
    a = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


def zero_(m):
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = zero_(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb_act):
        h = self.conv1(F.silu(self.norm1(x.float())))  # norms in f32, as Kiln (and autocast needs it)
        h = h + self.temb(temb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h.float())))
        return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = zero_(nn.Linear(c, c))

    def forward(self, x):
        n, c, h, w = x.shape
        y = self.norm(x.float()).reshape(n, c, h * w).transpose(1, 2)
        q, k, v = self.qkv(y).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
        a = self.proj(a).transpose(1, 2).reshape(n, c, h, w)
        return x + a


class UNet(nn.Module):
    def __init__(self, in_channels=1, channels=64, channel_mult=(1, 2, 4), res_blocks=2, groups=32,
                 attention=True, num_classes=0):
        super().__init__()
        self.channels = channels
        self.num_classes = num_classes
        temb = 4 * channels
        self.time_fc1 = nn.Linear(channels, temb)
        self.time_fc2 = nn.Linear(temb, temb)
        if num_classes > 0:
            self.class_embed = nn.Embedding(num_classes + 1, temb)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        levels = len(channel_mult)
        skips = [channels]
        cur = channels
        self.down = nn.ModuleList()
        for i, m in enumerate(channel_mult):
            level = nn.ModuleDict({"res": nn.ModuleList()})
            with_attn = attention and i == levels - 1
            if with_attn:
                level["attn"] = nn.ModuleList()
            for _ in range(res_blocks):
                level["res"].append(ResBlock(cur, channels * m, temb, groups))
                cur = channels * m
                if with_attn:
                    level["attn"].append(AttnBlock(cur, groups))
                skips.append(cur)
            if i != levels - 1:
                level["downsample"] = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                skips.append(cur)
            self.down.append(level)
        self.mid = nn.ModuleDict({"res1": ResBlock(cur, cur, temb, groups)})
        if attention:
            self.mid["attn"] = AttnBlock(cur, groups)
        self.mid["res2"] = ResBlock(cur, cur, temb, groups)
        ups = [None] * levels
        for i in range(levels - 1, -1, -1):
            level = nn.ModuleDict({"res": nn.ModuleList()})
            with_attn = attention and i == levels - 1
            if with_attn:
                level["attn"] = nn.ModuleList()
            for _ in range(res_blocks + 1):
                level["res"].append(ResBlock(cur + skips.pop(), channels * channel_mult[i], temb, groups))
                cur = channels * channel_mult[i]
                if with_attn:
                    level["attn"].append(AttnBlock(cur, groups))
            if i != 0:
                level["upsample"] = nn.Conv2d(cur, cur, 3, padding=1)
            ups[i] = level
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = zero_(nn.Conv2d(cur, in_channels, 3, padding=1))

    def forward(self, x, t, labels=None):
        emb = self.time_fc2(F.silu(self.time_fc1(timestep_embedding(t, self.channels))))
        if self.num_classes > 0 and labels is not None:
            emb = emb + self.class_embed(labels)
        temb = F.silu(emb)
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for j, res in enumerate(level["res"]):
                h = res(h, temb)
                if "attn" in level:
                    h = level["attn"][j](h)
                hs.append(h)
            if "downsample" in level:
                h = level["downsample"](h)
                hs.append(h)
        h = self.mid["res1"](h, temb)
        if "attn" in self.mid:
            h = self.mid["attn"](h)
        h = self.mid["res2"](h, temb)
        for level in reversed(self.up):
            for j, res in enumerate(level["res"]):
                h = res(torch.cat([h, hs.pop()], dim=1), temb)
                if "attn" in level:
                    h = level["attn"][j](h)
            if "upsample" in level:
                h = level["upsample"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h.float())))


def timed(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "worst_s": max(times), "best_s": min(times)}


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet()
    params = sum(p.numel() for p in net.parameters())
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    g = torch.Generator().manual_seed(1)
    b = args.batch
    x = torch.randn(b, 1, 28, 28, generator=g)
    dtype = "bf16" if args.bf16 else "f32"

    def denoise():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            t = torch.full((b,), 500, dtype=torch.long)
            eps = net(x, t).float()
            a, abar, abar_prev = 1 - betas[500].item(), ab[500].item(), ab[499].item()
            mean = (x - (1 - a) / math.sqrt(1 - abar) * eps) / math.sqrt(a)
            sigma = math.sqrt((1 - abar_prev) / (1 - abar) * (1 - a))
            return mean + sigma * torch.randn(x.shape, generator=g)

    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    x0 = torch.rand(b, 1, 28, 28, generator=g) * 2 - 1

    def train():
        t = torch.randint(0, T, (b,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a = ab[t].float().sqrt()[:, None, None, None]
        s = (1 - ab[t]).float().sqrt()[:, None, None, None]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = net(a * x0 + s * eps, t)
        loss = F.mse_loss(out.float(), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for name, fn in (("denoise_step", denoise), ("train_step", train)):
        if args.what not in ("both", name.split("_")[0]):
            continue
        r = timed(fn, args.reps)
        r.update({"workload": "ddpm", "case": f"{name}_b{b}_{dtype}", "threads": args.threads,
                  "params": params})
        print(json.dumps(r), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--bf16", action="store_true")
    b.add_argument("--what", default="both", choices=["both", "denoise", "train"])
    args = ap.parse_args()
    bench(args)


if __name__ == "__main__":
    main()
