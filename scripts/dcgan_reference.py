"""The PyTorch DCGAN tutorial recipe trained on a folder of pictures: the reference that
easel's real-picture recipes are compared with (docs/own-pictures.md). It shares no code
with easel.

    pip install torch numpy pillow
    python3 scripts/dcgan_reference.py --data PICTURES --size 32 --steps 1000 --out samples/
    python3 scripts/judge.py pictures samples/ --data HELD_OUT

The recipe is the tutorial's (nz 100, ngf = ndf = 64, batch norm, ReLU / LeakyReLU 0.2,
BCE, Adam 2e-4 with beta1 0.5, weights drawn from N(0, 0.02)), with the generator's widths
for SIZE (32: 256 → 128 → 64, as easel's `sketches/gan_icons.rhai`). Pictures are composited
over white and area-averaged to SIZE; `--ema 0.999` also keeps a moving average of the
generator's weights (warmed up: min(decay, (1 + t) / (10 + t)) after step t) and samples
from it, as easel does by default. Writes `--count`
samples as PNGs into `--out`.
"""
import argparse
import copy
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data", required=True, help="a folder of pictures (any depth)")
p.add_argument("--size", type=int, default=32, choices=[32, 64])
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
p.add_argument("--layers", choices=["tutorial", "nearest"], default="tutorial",
               help="tutorial: 4x4 (transposed) convolutions; nearest: G doubles by nearest "
                    "neighbour then a 3x3 convolution, D's convolutions 3x3 (as easel's "
                    "upsample: \"nearest\", kernel: 3)")
p.add_argument("--ema", type=float, default=0.0, help="moving average of G's weights (0: none)")
p.add_argument("--out", required=True, help="folder for the samples")
p.add_argument("--count", type=int, default=256)
args = p.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)


def load(folder, size):
    pics = []
    for d, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            if not f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")):
                continue
            try:
                img = Image.open(os.path.join(d, f)).convert("RGBA")
            except OSError:
                continue
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img).convert("RGB").resize((size, size), Image.BOX)
            pics.append(np.asarray(img, dtype=np.float32) / 127.5 - 1)
    if not pics:
        raise SystemExit(f"{folder}: no pictures")
    return torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).contiguous()


data = load(args.data, args.size)
nz, ngf, ndf = 100, 64, 64
ups = int(math.log2(args.size)) - 2  # widths: 32 -> 3 (4 -> 8 -> 16 -> 32)
g_widths = [ngf * 2 ** i for i in reversed(range(ups))]  # 32: [256, 128, 64]
layers = [nn.ConvTranspose2d(nz, g_widths[0], 4, 1, 0, bias=False), nn.BatchNorm2d(g_widths[0]), nn.ReLU(True)]


def up(a, b):
    if args.layers == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1, bias=False))
    return nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False)


def down(a, b):
    return nn.Conv2d(a, b, 3 if args.layers == "nearest" else 4, 2, 1, bias=False)


for a, b in zip(g_widths, g_widths[1:]):
    layers += [up(a, b), nn.BatchNorm2d(b), nn.ReLU(True)]
layers += [up(g_widths[-1], 3), nn.Tanh()]
G = nn.Sequential(*layers)
d_widths = [ndf * 2 ** i for i in range(ups)]  # 32: [64, 128, 256]
layers = [down(3, d_widths[0]), nn.LeakyReLU(0.2, True)]
for a, b in zip(d_widths, d_widths[1:]):
    layers += [down(a, b), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
layers += [nn.Conv2d(d_widths[-1], 1, 4, 1, 0, bias=False)]
D = nn.Sequential(*layers)


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


G.apply(init)
D.apply(init)
ema = copy.deepcopy(G) if args.ema > 0 else None
bce = nn.BCEWithLogitsLoss()
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
ones, zeros = torch.ones(args.batch), torch.zeros(args.batch)
order, at = rng.permutation(len(data)), 0
start = time.perf_counter()
for step in range(1, args.steps + 1):
    if at + args.batch > len(order):
        order, at = rng.permutation(len(data)), 0
    real = data[order[at:at + args.batch]]
    at += args.batch
    fake = G(torch.randn(args.batch, nz, 1, 1))
    opt_d.zero_grad()
    d_loss = bce(D(real).view(-1), ones) + bce(D(fake.detach()).view(-1), zeros)
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    g_loss = bce(D(fake).view(-1), ones)
    g_loss.backward()
    opt_g.step()
    if ema is not None:
        # Warmed up as easel's (and StyleGAN's): early steps average over fewer steps.
        decay = min(args.ema, step / (9 + step))
        with torch.no_grad():
            for e, w in zip(ema.parameters(), G.parameters()):
                e.lerp_(w, 1 - decay)
            for e, w in zip(ema.buffers(), G.buffers()):
                e.copy_(w)
    if step % 100 == 0 or step == args.steps:
        rate = step * args.batch / (time.perf_counter() - start)
        print(f"step {step}: D {d_loss.item():.3f}, G {g_loss.item():.3f}, {rate:.0f} img/s", flush=True)

sampler = ema if ema is not None else G
sampler.eval()  # batch norm with its running statistics, as a trained generator samples
os.makedirs(args.out, exist_ok=True)
with torch.no_grad():
    gen = torch.Generator().manual_seed(args.seed + 1)
    pics = sampler(torch.randn(args.count, nz, 1, 1, generator=gen))
pics = ((pics.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
for i, pic in enumerate(pics):
    Image.fromarray(pic).save(os.path.join(args.out, f"{i:04}.png"))
print(f"wrote {len(pics)} samples to {args.out}")
