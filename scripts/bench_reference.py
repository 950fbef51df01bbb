#!/usr/bin/env python3
"""Pillow reference for `cargo bench --bench truchet`: the py-truchet-gan dataset
(1000 grayscale 32x32 images of 8 px triangle tiles, 4 random rotations) made in memory,
the way that project draws it (one ImageDraw.polygon per tile).

    pip install pillow && python3 scripts/bench_reference.py
"""
import random
import time

from PIL import Image, ImageDraw

SIZE, TILE = 32, 8


def make(rng):
    img = Image.new("L", (SIZE, SIZE), 255)
    draw = ImageDraw.Draw(img)
    for y in range(0, SIZE, TILE):
        for x in range(0, SIZE, TILE):
            corners = [(x, y), (x + TILE, y), (x + TILE, y + TILE), (x, y + TILE)]
            r = rng.randrange(4)
            draw.polygon([corners[r], corners[(r + 1) % 4], corners[(r + 3) % 4]], fill=0)
    return img


def main():
    rng = random.Random(0)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        images = [make(rng) for _ in range(1000)]
        best = min(best, time.perf_counter() - t)
    assert len(images) == 1000
    print(f"pillow py_truchet_gan_dataset_1000: {best * 1000:.1f} ms (best of 5)")


if __name__ == "__main__":
    main()
