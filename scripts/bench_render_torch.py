#!/usr/bin/env python3
"""PyTorch reference for scripts/bench_render.sh: the CPPN of benches/cppn.rs (inputs x, y, r
and an 8-dim z; 7 hidden tanh layers of 32; sigmoid RGB output; N(0, 1) weights and
biases) evaluated over every pixel of a 1024x1024 canvas on the CPU, in process, as a
framework user writes it (one batched matmul chain), then turned into 8-bit RGB and saved
as PNG with Pillow. Prints the best of --repeat timings of the network alone and of
network + PNG.
"""
import argparse
import sys
import time

try:
    import numpy as np
    import torch
    from PIL import Image
except ImportError as e:
    sys.exit(f"bench_render_torch.py: {e}; needs torch, numpy and pillow "
             "(python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy pillow)")

p = argparse.ArgumentParser()
p.add_argument("--size", type=int, default=1024)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeat", type=int, default=3)
p.add_argument("--out", default="/tmp/bench_render_torch.png")
a = p.parse_args()
torch.set_num_threads(a.threads)
g = torch.Generator().manual_seed(1)
sizes = [3 + 8] + [32] * 7 + [3]
layers = [(torch.randn(i, o, generator=g), torch.randn(o, generator=g))
          for i, o in zip(sizes, sizes[1:])]
z = torch.randn(8, generator=g)


def render():
    n = a.size
    c = (torch.arange(n, dtype=torch.float32) + 0.5 - n / 2) / (n / 2)
    y, x = torch.meshgrid(c, c, indexing="ij")
    r = torch.sqrt(x * x + y * y)
    h = torch.cat([x.reshape(-1, 1), y.reshape(-1, 1), r.reshape(-1, 1),
                   z.expand(n * n, 8)], dim=1)
    with torch.no_grad():
        for k, (w, b) in enumerate(layers):
            h = h @ w + b
            h = torch.tanh(h) if k + 1 < len(layers) else torch.sigmoid(h)
    return (h.clamp(0, 1) * 255).round().to(torch.uint8).reshape(n, n, 3).numpy()


best_net, best_all = float("inf"), float("inf")
for _ in range(a.repeat):
    t0 = time.perf_counter()
    pixels = render()
    t1 = time.perf_counter()
    Image.fromarray(pixels).save(a.out)
    t2 = time.perf_counter()
    best_net, best_all = min(best_net, t1 - t0), min(best_all, t2 - t0)
print(f"pytorch {torch.__version__}, {a.threads} threads, {a.size}x{a.size}: "
      f"network {best_net:.3f} s, network + PNG {best_all:.3f} s (best of {a.repeat})")
