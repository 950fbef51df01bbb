#!/usr/bin/env python3
"""easel's PyTorch reference for ESRGAN upscaling, written from the published architectures
(RRDBNet: Wang et al. 2018, ESRGAN; SRVGGNetCompact: Real-ESRGAN's animevideo models), as
BasicSR defines them. It shares no code with easel.

  esrgan_reference.py fixtures OUT_DIR [--models DIR]
      Writes the test fixtures easel's tests compare against: a test picture, small
      random-weight networks in every file format easel reads (.pth with BasicSR names
      under params_ema, .pth with the 2018 ESRGAN names, .safetensors) and, for the ncnn
      models in DIR (default models/esrgan), reference outputs computed from the .bin's
      weights read here (independently of easel's reader).
  esrgan_reference.py bench --param FILE.param --size 128 [--threads N] [--repeat N]
      Times PyTorch eager CPU on an ncnn model's weights (forward only, the same padding
      as easel) and prints seconds per picture, best of --repeat.

Outputs are computed as easel computes them: the picture reflect-padded by 10 px,
run whole, cropped by 10 x scale, clamped to [0, 1] and rounded; alpha resized bicubically.
Needs torch, numpy, pillow (and safetensors for the .safetensors fixtures).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

PAD = 10


class ResidualDenseBlock(nn.Module):
    def __init__(self, nf=64, gc=32):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x):
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, scale=4, nf=64, nb=23, gc=32):
        super().__init__()
        self.scale = scale
        in_ch = {4: 3, 2: 12, 1: 48}[scale]
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x):
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            x = F.pixel_unshuffle(x, 4)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    def __init__(self, nf=64, num_conv=16, upscale=4):
        super().__init__()
        self.upscale = upscale
        layers = [nn.Conv2d(3, nf, 3, 1, 1), nn.PReLU(nf)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(nf)]
        layers.append(nn.Conv2d(nf, 3 * upscale * upscale, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x):
        out = self.upsampler(self.body(x))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class Resized(nn.Module):
    """A network followed by a bicubic resize (the x2 / x3 ncnn animevideov3 variants)."""

    def __init__(self, net, factor):
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        y = self.net(x)
        h, w = int(y.shape[2] * self.factor), int(y.shape[3] * self.factor)
        return F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)


# --- ncnn weights, read independently of easel: every Convolution's tagged kernel and raw
# bias, every PReLU's raw slopes, in .param order; assigned to the torch model's
# parameters in their declaration order.

def read_ncnn(param_path):
    bin_path = param_path[: -len(".param")] + ".bin"
    data = open(bin_path, "rb").read()
    at = 0
    tensors = []
    lines = open(param_path).read().split("\n")[2:]
    resize = None
    for line in lines:
        f = line.split()
        if not f:
            continue
        kind, nb, nt = f[0], int(f[2]), int(f[3])
        params = dict(p.split("=", 1) for p in f[4 + nb + nt:])
        if kind == "Convolution":
            cout, k, size = int(params["0"]), int(params["1"]), int(params["6"])
            tag = int.from_bytes(data[at:at + 4], "little")
            at += 4
            assert tag == 0x01306B47, hex(tag)
            w = np.frombuffer(data[at:at + 2 * size], dtype="<f2").astype(np.float32)
            at += (2 * size + 3) // 4 * 4
            tensors.append(w.reshape(cout, size // (cout * k * k), k, k))
            tensors.append(np.frombuffer(data[at:at + 4 * cout], dtype="<f4").copy())
            at += 4 * cout
        elif kind == "PReLU":
            n = int(params["0"])
            tensors.append(np.frombuffer(data[at:at + 4 * n], dtype="<f4").copy())
            at += 4 * n
        elif kind == "Interp" and params.get("0") == "3":
            resize = float(params["1"])
    assert at == len(data), (at, len(data))
    return tensors, resize


def ncnn_model(param_path):
    tensors, resize = read_ncnn(param_path)
    convs = len([t for t in tensors if t.ndim == 4])
    prelus = any(t.ndim == 1 and i > 0 and tensors[i - 1].ndim == 1 for i, t in enumerate(tensors))
    if prelus:  # SRVGGNetCompact: conv, prelu, ..., conv
        nf = tensors[0].shape[0]
        up = int(round((tensors[-2].shape[0] / 3) ** 0.5))
        net = SRVGGNetCompact(nf=nf, num_conv=convs - 2, upscale=up)
    else:  # RRDBNet: 1 + 15·nb + 5 convolutions
        nb = (convs - 6) // 15
        nf, gc = tensors[0].shape[0], tensors[2].shape[0]
        net = RRDBNet(scale=4, nf=nf, nb=nb, gc=gc)
    params = list(net.parameters())
    assert len(params) == len(tensors), (len(params), len(tensors))
    with torch.no_grad():
        for p, t in zip(params, tensors):
            assert tuple(p.shape) == t.shape, (p.shape, t.shape)
            p.copy_(torch.from_numpy(t))
    return Resized(net, resize) if resize else net


def upscale(net, rgba, device="cpu", amp=False):
    """easel's way: reflect pad, run whole, crop, clamp, round; alpha bicubic. `amp`:
    PyTorch's autocast to bfloat16 on `device`."""
    rgb = torch.from_numpy(rgba[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = F.pad(rgb, (PAD, PAD, PAD, PAD), mode="reflect").to(device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
        y = net(x).float().cpu()
    s = y.shape[2] // x.shape[2] if y.shape[2] % x.shape[2] == 0 else round(y.shape[2] / x.shape[2])
    h, w = rgba.shape[0] * s, rgba.shape[1] * s
    y = y[:, :, PAD * s:PAD * s + h, PAD * s:PAD * s + w]
    out = (y[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    if rgba.shape[2] == 4:
        a = torch.from_numpy(rgba[:, :, 3].astype(np.float32) / 255.0)[None, None]
        a = F.interpolate(a, size=(h, w), mode="bicubic", align_corners=False)
        a = (a[0, 0].clamp(0, 1) * 255).round().byte().numpy()
        out = np.dstack([out, a])
    return out


def randomise(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for m in net.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.3)
        if isinstance(net, RRDBNet):
            net.conv_last.bias.fill_(0.5)  # outputs around mid-grey, not clamped away


def old_esrgan_names(sd, nb):
    out = {}
    for k, v in sd.items():
        stem, leaf = k.rsplit(".", 1)
        if stem == "conv_first":
            stem = "model.0"
        elif stem == "conv_body":
            stem = f"model.1.sub.{nb}"
        elif stem.startswith("body."):
            _, i, rdb, conv = stem.split(".")
            stem = f"model.1.sub.{i}.{rdb.upper()}.{conv}.0"
        else:
            stem = {"conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}[stem]
        out[f"{stem}.{leaf}"] = v
    return out


def fixtures(out_dir, models_dir, picture):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    rgba = np.array(Image.open(picture).convert("RGBA"))[16:48, 8:40]  # 32x32 crop
    Image.fromarray(rgba).save(os.path.join(out_dir, "picture.png"))

    def save(name, arr):
        Image.fromarray(arr).save(os.path.join(out_dir, name + ".expected.png"))
        inside = ((arr[:, :, :3] > 0) & (arr[:, :, :3] < 255)).mean()
        print(f"{name}: {arr.shape[1]}x{arr.shape[0]}, {inside:.0%} of values inside (0, 255)")

    cases = [
        ("rrdb_x4", RRDBNet(scale=4, nf=16, nb=2, gc=8), 1),
        ("rrdb_x2", RRDBNet(scale=2, nf=16, nb=1, gc=8), 2),
        ("srvgg_x4", SRVGGNetCompact(nf=16, num_conv=3, upscale=4), 3),
    ]
    from safetensors.torch import save_file
    for name, net, seed in cases:
        randomise(net, seed)
        net.eval()
        sd = {k: v.contiguous() for k, v in net.state_dict().items()}
        torch.save({"params_ema": sd}, os.path.join(out_dir, name + ".pth"))
        save_file(sd, os.path.join(out_dir, name + ".safetensors"))
        if name == "rrdb_x4":
            torch.save(old_esrgan_names(sd, 2), os.path.join(out_dir, name + "_2018.pth"))
        save(name, upscale(net, rgba))
    for param in sorted(os.listdir(models_dir)):
        if param.endswith(".param"):
            net = ncnn_model(os.path.join(models_dir, param)).eval()
            save(param[: -len(".param")], upscale(net, rgba))


def bench(param, size, threads, repeat, device="cpu", amp=False):
    torch.set_num_threads(threads)
    net = ncnn_model(param).eval().to(device)
    g = torch.Generator().manual_seed(0)
    rgba = (torch.rand((size, size, 3), generator=g) * 255).byte().numpy()
    if device != "cpu":
        upscale(net, rgba, device, amp)  # warm-up: kernels load, cuDNN picks algorithms
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        upscale(net, rgba, device, amp)  # ends with a copy to the CPU: synchronised
        best = min(best, time.perf_counter() - t)
    print(f"{best:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("out_dir")
    f.add_argument("--models", default="models/esrgan")
    f.add_argument("--picture", default="data/oxygen64/apps-konqueror.png")
    b = sub.add_parser("bench")
    b.add_argument("--param", required=True)
    b.add_argument("--size", type=int, default=128)
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--device", default="cpu", help="cpu or cuda")
    b.add_argument("--amp", action="store_true", help="autocast to bfloat16")
    a = ap.parse_args()
    if a.cmd == "fixtures":
        fixtures(a.out_dir, a.models, a.picture)
    else:
        bench(a.param, a.size, a.threads, a.repeat, a.device, a.amp)


if __name__ == "__main__":
    sys.exit(main())
