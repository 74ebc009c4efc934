#!/usr/bin/env python3
"""Makes the figures of docs/models/style_transfer.md from the run folders of the configs:

    kiln run configs/style-gatys.toml --set pipeline.run_dir=/tmp/style_runs/gatys
    kiln run configs/style-dream.toml --set pipeline.run_dir=/tmp/style_runs/dream
    kiln run configs/style-fast.toml  --set pipeline.run_dir=/tmp/style_runs/fast
    /usr/bin/python3 docs/images/style/make_figures.py /tmp/style_runs

Writes gatys.png, fast.png, dream.png and losses.png here and prints the loss tables (markdown).
Needs numpy only.
"""
import csv
import os
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
ASSETS = os.path.join(ROOT, "configs", "style")


def read_png(path):
    data = open(path, "rb").read()
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (0, 2), path
            ch = 3 if ctype == 2 else 1
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8)
    stride = w * ch
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)].astype(np.int32)
        cur = np.zeros(stride, np.int32)
        if f in (0, 2):
            cur = (line + (prev if f == 2 else 0)) & 255
        else:
            for x in range(stride):
                a = cur[x - ch] if x >= ch else 0
                b, c = prev[x], (prev[x - ch] if x >= ch else 0)
                if f == 1:
                    p = a
                elif f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    img = out.reshape(h, w, ch).astype(np.uint8)
    return np.repeat(img, 3, 2) if ch == 1 else img


def resize(img, n):
    h, w, _ = img.shape
    ys = (np.arange(n) * h // n)
    xs = (np.arange(n) * w // n)
    return img[ys][:, xs]


def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag, d):
        return struct.pack(">I", len(d)) + tag + d + struct.pack(">I", zlib.crc32(tag + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)


def grid(rows, n=192, pad=4):
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (n + pad) + pad, cols * (n + pad) + pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out[pad + i * (n + pad):pad + i * (n + pad) + n, pad + j * (n + pad):pad + j * (n + pad) + n] = resize(im, n)
    return out


def losses(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def plot(series, path, w=480, h=240):
    """Log-scale line plot of several loss curves (no matplotlib on the machine)."""
    img = np.full((h, w, 3), 255, np.uint8)
    colours = [(200, 40, 40), (40, 90, 200), (30, 150, 60), (160, 80, 180)]
    vals = [v for _, ys in series for v in ys if v > 0]
    lo, hi = np.log10(min(vals)), np.log10(max(vals))
    for gy in range(int(np.floor(lo)), int(np.ceil(hi)) + 1):
        y = int((1 - (gy - lo) / max(hi - lo, 1e-9)) * (h - 20)) + 10
        if 0 <= y < h:
            img[y, :] = (225, 225, 225)
    for k, (_, ys) in enumerate(series):
        pts = [(int(i / max(len(ys) - 1, 1) * (w - 20)) + 10,
                int((1 - (np.log10(max(v, 1e-12)) - lo) / max(hi - lo, 1e-9)) * (h - 20)) + 10)
               for i, v in enumerate(ys)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for t in np.linspace(0, 1, max(abs(x1 - x0), abs(y1 - y0)) + 1):
                x, y = int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t))
                img[max(0, y - 1):y + 1, max(0, x - 1):x + 1] = colours[k % len(colours)]
    write_png(path, img)


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else "/tmp/style_runs"
    g = os.path.join(runs, "gatys")
    stages = [("waves", "content/landscape.png", ["style/waves.png"]),
              ("mosaic", "content/still_life.png", ["style/mosaic.png"]),
              ("strokes-colors", "content/landscape.png", ["style/strokes.png"]),
              ("blend", "content/still_life.png", ["style/strokes.png", "style/waves.png"])]
    rows = []
    for sid, content, styles in stages:
        row = [read_png(os.path.join(ASSETS, content))]
        row += [read_png(os.path.join(ASSETS, s)) for s in styles]
        while len(row) < 3:
            row.append(np.full((192, 192, 3), 255, np.uint8))
        row.append(read_png(os.path.join(g, sid, "stylized.png")))
        rows.append(row)
    write_png(os.path.join(HERE, "gatys.png"), grid(rows))
    series = []
    for sid, _, _ in stages:
        rows_ = losses(os.path.join(g, sid, "losses.csv"))
        print(f"\n{sid}: iteration | scale | content | style | total")
        step = max(1, len(rows_) // 8)
        for r in rows_[::step] + [rows_[-1]]:
            print(f"| {r['iteration']} | {r['width']} | {r['content']} | {r['style']} | {r['total']} |")
        series.append((sid, [float(r["style"]) for r in rows_]))
    plot(series, os.path.join(HERE, "losses.png"))
    d = os.path.join(runs, "dream")
    if os.path.isdir(d):
        write_png(os.path.join(HERE, "dream.png"),
                  grid([[read_png(os.path.join(ASSETS, "content/still_life.png")),
                         read_png(os.path.join(d, "still-life", "dream.png")),
                         read_png(os.path.join(d, "noise", "dream.png"))]]))
    f = os.path.join(runs, "fast")
    if os.path.isdir(f):
        names = sorted(os.listdir(os.path.join(ASSETS, "content")))
        outs = sorted(os.listdir(os.path.join(f, "stylize", "samples")))
        write_png(os.path.join(HERE, "fast.png"),
                  grid([[read_png(os.path.join(ASSETS, "content", n)) for n in names] +
                        [read_png(os.path.join(ASSETS, "style/mosaic.png"))],
                        [read_png(os.path.join(f, "stylize", "samples", o)) for o in outs]]))


if __name__ == "__main__":
    main()
