"""The PyTorch DCGAN tutorial model (64x64x3, batch 64, Adam 2e-4, BCE), timed on CUDA
(the reference for scripts/bench_gpu.sh) or, with --device cpu, on the CPU with
--threads threads; --amp bf16 runs the forward passes and losses under PyTorch's autocast
to bfloat16 (its mixed precision: weights and Adam stay f32). Random images: step time does
not depend on them."""
import argparse
import time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=200)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
p.add_argument("--amp", choices=["off", "bf16"], default="off", help="autocast to bfloat16")
args = p.parse_args()
dev = torch.device(args.device)
if args.threads:
    torch.set_num_threads(args.threads)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()

nz, ngf, ndf = 100, 64, 64

G = nn.Sequential(
    nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
    nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
    nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
    nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
    nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh(),
).to(dev)
D = nn.Sequential(
    nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
    nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
    nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
    nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
    nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
).to(dev)
loss = nn.BCEWithLogitsLoss()
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
real = torch.rand(args.batch, 3, 64, 64, device=dev) * 2 - 1
ones = torch.ones(args.batch, device=dev)
zeros = torch.zeros(args.batch, device=dev)


def autocast():
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")


def step():
    z = torch.randn(args.batch, nz, 1, 1, device=dev)
    with autocast():
        fake = G(z)
    opt_d.zero_grad()
    with autocast():
        d_loss = loss(D(real).view(-1), ones) + loss(D(fake.detach()).view(-1), zeros)
    d_loss.backward()
    opt_d.step()
    opt_g.zero_grad()
    with autocast():
        g_loss = loss(D(fake).view(-1), ones)
    g_loss.backward()
    opt_g.step()


for _ in range(10 if dev.type == "cuda" else 2):
    step()
sync()
t = time.perf_counter()
for _ in range(args.steps):
    step()
sync()
secs = time.perf_counter() - t
where = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
print(f"pytorch {torch.__version__} on {where}{', autocast bf16' if args.amp == 'bf16' else ''}: "
      f"{secs / args.steps * 1000:.1f} ms/step, {args.steps * args.batch / secs:.0f} images/s")
