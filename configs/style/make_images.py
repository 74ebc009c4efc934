#!/usr/bin/env python3
"""Renders the images the style_transfer configs use: procedural content scenes and style
textures, made by code here so they carry no licence of their own. Deterministic (fixed seeds).

    /usr/bin/python3 configs/style/make_images.py        # writes configs/style/{content,style,train}/

Needs numpy only (PNG written with zlib).
"""
import os
import struct
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_png(path, img):
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    h, w, c = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(png)


def grid(n):
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / n
    return y, x


def smooth_noise(rng, n, cells):
    """Value noise: a random cells x cells grid, bilinearly upsampled to n x n."""
    g = rng.random((cells + 1, cells + 1))
    y, x = grid(n)
    fy, fx = y * cells, x * cells
    iy, ix = np.floor(fy).astype(int), np.floor(fx).astype(int)
    ty, tx = fy - iy, fx - ix
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    a, b = g[iy, ix], g[iy, ix + 1]
    c, d = g[iy + 1, ix], g[iy + 1, ix + 1]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def landscape(n, seed):
    """Sky gradient, sun, two ranges of hills, a lake, a house with a roof."""
    rng = np.random.default_rng(seed)
    y, x = grid(n)
    img = np.zeros((n, n, 3))
    sky_top, sky_bot = np.array([0.25, 0.45, 0.85]), np.array([0.85, 0.9, 0.98])
    img[:] = sky_top + (sky_bot - sky_top) * y[..., None]
    sx, sy = 0.2 + 0.6 * rng.random(), 0.15 + 0.1 * rng.random()
    sun = (x - sx) ** 2 + (y - sy) ** 2 < 0.07 ** 2
    img[sun] = [1.0, 0.85, 0.3]
    for k, (base, col) in enumerate([(0.5, [0.35, 0.45, 0.55]), (0.62, [0.2, 0.55, 0.25])]):
        ph, fr = rng.random() * 6.28, 2 + 3 * rng.random()
        ridge = base + 0.06 * np.sin(x * fr * 3.14 + ph) + 0.03 * np.sin(x * 11 + 2 * ph)
        m = y > ridge
        shade = 0.85 + 0.3 * smooth_noise(rng, n, 8)
        img[m] = (np.array(col)[None, :] * shade[m][:, None])
    lake = y > 0.8
    img[lake] = np.array([0.15, 0.3, 0.6]) + 0.1 * np.sin(y[lake] * 200)[:, None]
    hx, hy, hw = 0.3 + 0.4 * rng.random(), 0.62, 0.14
    body = (np.abs(x - hx) < hw / 2) & (y > hy) & (y < hy + 0.14)
    img[body] = [0.85, 0.75, 0.6]
    roof = (y < hy) & (y > hy - 0.08) & (np.abs(x - hx) < (y - (hy - 0.08)) / 0.08 * (hw / 2 + 0.02))
    img[roof] = [0.6, 0.15, 0.1]
    door = (np.abs(x - hx) < 0.02) & (y > hy + 0.07) & (y < hy + 0.14)
    img[door] = [0.3, 0.2, 0.1]
    return img


def still_life(n, seed):
    """Shaded spheres and a box on a table in front of a wall."""
    rng = np.random.default_rng(seed)
    y, x = grid(n)
    img = np.zeros((n, n, 3))
    img[:] = [0.75, 0.7, 0.6]
    table = y > 0.65
    img[table] = np.array([0.45, 0.3, 0.18]) * (0.8 + 0.3 * smooth_noise(rng, n, 16))[table][:, None]
    bx = 0.55 + 0.2 * rng.random()
    box = (np.abs(x - bx) < 0.12) & (y > 0.42) & (y < 0.72)
    img[box] = [0.3, 0.35, 0.6]
    for _ in range(3):
        cx, cy, r = 0.15 + 0.5 * rng.random(), 0.55 + 0.1 * rng.random(), 0.08 + 0.06 * rng.random()
        col = rng.random(3) * 0.7 + 0.3
        d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r ** 2
        m = d2 < 1
        z = np.sqrt(np.clip(1 - d2, 0, 1))
        light = np.clip(0.3 + 0.7 * (z * 0.6 + (cx - x) / r * 0.3 + (cy - y) / r * 0.4), 0.15, 1.2)
        img[m] = np.clip(col[None, :] * light[m][:, None], 0, 1)
    return img


def waves(n, seed):
    """Flowing blue and white bands (style)."""
    rng = np.random.default_rng(seed)
    y, x = grid(n)
    warp = smooth_noise(rng, n, 6) * 2.0
    t = np.sin((y * 14 + np.sin(x * 9 + warp * 3) * 1.2 + warp) * 3.14)
    cols = np.array([[0.05, 0.15, 0.45], [0.2, 0.45, 0.75], [0.95, 0.95, 0.9]])
    u = (t + 1) / 2
    img = np.where(u[..., None] < 0.5, cols[0] + (cols[1] - cols[0]) * (u[..., None] * 2),
                   cols[1] + (cols[2] - cols[1]) * ((u[..., None] - 0.5) * 2))
    foam = (np.sin(x * 80 + y * 40) > 0.7) & (u > 0.8)
    img[foam] = [1, 1, 1]
    return img


def mosaic(n, seed):
    """Stained glass: Voronoi cells in saturated colours with dark lead lines (style)."""
    rng = np.random.default_rng(seed)
    y, x = grid(n)
    pts = rng.random((60, 2))
    palette = np.array([[0.8, 0.1, 0.1], [0.95, 0.7, 0.1], [0.1, 0.4, 0.8], [0.1, 0.6, 0.3],
                        [0.5, 0.1, 0.6], [0.95, 0.95, 0.8]])
    cols = palette[rng.integers(0, len(palette), 60)] * (0.75 + 0.25 * rng.random((60, 1)))
    d = (y[..., None] - pts[:, 0]) ** 2 + (x[..., None] - pts[:, 1]) ** 2
    order = np.argsort(d, axis=-1)
    nearest, second = order[..., 0], order[..., 1]
    d1 = np.take_along_axis(d, nearest[..., None], -1)[..., 0]
    d2 = np.take_along_axis(d, second[..., None], -1)[..., 0]
    img = cols[nearest]
    edge = np.sqrt(d2) - np.sqrt(d1) < 0.012
    img[edge] = [0.08, 0.07, 0.06]
    return img


def strokes(n, seed):
    """Short oriented brush strokes in warm colours on a dark ground (style)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n, 3)) + [0.12, 0.1, 0.15]
    y, x = grid(n)
    palette = np.array([[0.95, 0.75, 0.2], [0.9, 0.4, 0.1], [0.98, 0.9, 0.6], [0.3, 0.5, 0.8]])
    for _ in range(700):
        cx, cy = rng.random(2)
        ang = np.sin(cx * 6) + np.cos(cy * 5) + 0.3 * rng.standard_normal()
        ca, sa = np.cos(ang), np.sin(ang)
        u = (x - cx) * ca + (y - cy) * sa
        v = -(x - cx) * sa + (y - cy) * ca
        m = (np.abs(u) < 0.05) & (np.abs(v) < 0.008)
        col = palette[rng.integers(0, len(palette))] * (0.8 + 0.2 * rng.random())
        img[m] = col
    return img


def main():
    write_png(os.path.join(HERE, "content", "landscape.png"), landscape(256, 1))
    write_png(os.path.join(HERE, "content", "still_life.png"), still_life(256, 2))
    write_png(os.path.join(HERE, "style", "waves.png"), waves(256, 3))
    write_png(os.path.join(HERE, "style", "mosaic.png"), mosaic(256, 4))
    write_png(os.path.join(HERE, "style", "strokes.png"), strokes(256, 5))
    # Content images for train-fast: 16 small scenes of both kinds.
    for i in range(16):
        f = landscape if i % 2 == 0 else still_life
        write_png(os.path.join(HERE, "train", f"scene_{i:02d}.png"), f(128, 100 + i))


if __name__ == "__main__":
    main()
