#!/usr/bin/env python3
"""PyTorch reference for scripts/bench_fit.sh: fits the network of sketches/cppn_fit.rhai
(inputs x, y, r; 5 hidden tanh layers of 32; sigmoid RGB output; weights and biases drawn
from N(0, 0.3^2)) to the 64x64 image with full-batch MSE and Adam, on the CPU, and prints
the in-process time of the training loop and the final PSNR (outputs clamped to [0, 1]).

Coordinates are easel's: pixel centres, the shorter side spanning [-1, 1], r = sqrt(x^2 + y^2).
"""
import argparse
import math
import sys
import time

try:
    import numpy as np
    import torch
    from PIL import Image
except ImportError as e:
    sys.exit(f"bench_fit_torch.py: {e}; needs torch, numpy and pillow "
             "(python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy pillow)")

p = argparse.ArgumentParser()
p.add_argument("--image", default="sketches/images/arcs64.png")
p.add_argument("--steps", type=int, default=600)
p.add_argument("--lr", type=float, default=0.005)
p.add_argument("--depth", type=int, default=5)
p.add_argument("--width", type=int, default=32)
p.add_argument("--init-std", type=float, default=0.3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=1)
args = p.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)

img = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32) / 255.0
h, w, _ = img.shape
unit = min(w, h) / 2.0
xs = (np.arange(w) + 0.5 - w / 2.0) / unit
ys = (np.arange(h) + 0.5 - h / 2.0) / unit
gx, gy = np.meshgrid(xs, ys)  # row-major: y outer, x inner, as easel's pixels
coords = np.stack([gx, gy, np.sqrt(gx * gx + gy * gy)], axis=-1).reshape(-1, 3)
x = torch.from_numpy(coords.astype(np.float32))
y = torch.from_numpy(img.reshape(-1, 3).copy())

sizes = [3] + [args.width] * args.depth + [3]
layers = []
for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
    lin = torch.nn.Linear(a, b)
    with torch.no_grad():
        lin.weight.normal_(0.0, args.init_std)
        lin.bias.normal_(0.0, args.init_std)
    layers += [lin, torch.nn.Tanh() if i < len(sizes) - 2 else torch.nn.Sigmoid()]
net = torch.nn.Sequential(*layers)
opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

start = time.perf_counter()
for step in range(args.steps):
    opt.zero_grad(set_to_none=True)
    loss = torch.mean((net(x) - y) ** 2)
    loss.backward()
    opt.step()
    last = loss.item()  # easel reads every step's loss too
elapsed = time.perf_counter() - start

with torch.no_grad():
    mse = torch.mean((net(x).clamp(0, 1) - y) ** 2).item()
psnr = 10 * math.log10(1 / max(mse, 1e-12))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: "
      f"fit {args.steps} steps in {elapsed:.3f} s, PSNR {psnr:.2f} dB, last loss {last:.6f}")
print(f"RESULT torch_s={elapsed:.4f} torch_psnr={psnr:.3f}")
