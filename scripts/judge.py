#!/usr/bin/env python3
"""Independent judges of easel's Truchet generators: they share no code and no training
with easel's own checks (src/gan/classifier.rs, tests/model.rs). Each learns only from
real renders that `easel dataset` draws from the data sketch, with seeds the model never
trained on, and looks at samples `easel sample` writes.

    pip install numpy pillow scikit-learn scikit-image
    python3 scripts/judge.py truchet models/truchet32                 # DCGAN, 32 px
    python3 scripts/judge.py truchet models/cppn_truchet32 --size 256  # CPPN-GAN at 256 px
    python3 scripts/judge.py classes models/cdcgan32                  # one row per class
    python3 scripts/judge.py pictures models/icons32                  # a folder of pictures
    python3 scripts/judge.py pictures RUN --data held-out/            # against other pictures

What they measure:
  valid      the fraction of tiles (the sketch's tile grid, after shrinking a sample to the
             training size) that match a tile of a real render: binarised at 0.5, within
             --tolerance of the pixels (default 6%) of one of the distinct tiles real
             renders contain
  clean      the fraction of samples whose every tile is valid
  grey       the fraction of pixels between 25% and 75% grey at the size drawn (a sharp
             black-and-white tiling has almost none; anti-aliased line families have some:
             real renders at the same size are the floor, printed beside it)
  edges      (--size) the boundary's length over that of real renders drawn at that size
             (1.00: as straight and clean; serrated edges and specks lengthen it)
  recognised (classes) the fraction of a class's samples that a HOG + RBF-SVM classifier
             of the real renders' classes puts in that class
  diversity  (classes) mean pairwise distance of the samples over that of real renders
  swd        (pictures) sliced Wasserstein distance x1000 between the samples and the real
             pictures, as Karras et al. 2018 define it (7x7 patches of every level of a
             Laplacian pyramid down to 16 px, normalised per channel, 512 random
             directions), written here from the paper with NumPy; beside it the same
             distance between two disjoint halves of the real pictures (the floor)
  swd real   (pictures) the same with both sets normalised by the real pictures' mean and
             deviation instead of each by its own: the paper's normalisation hides a
             colour or contrast shift shared by all samples, this one counts it
  copying    (pictures) each sample's distance to its nearest real picture over a real
             picture's distance to its nearest other real one (median): well below 1
             means the generator reproduces its training pictures

Exit 1 when a figure misses its bar (--min-valid 0.95, --max-grey 0.03, --min-recognised
0.9, --min-diversity 0.8; pictures: --max-swd and --max-swd-real if given, --min-copying
0.5).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def easel(binary, *args):
    out = subprocess.run([binary, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"easel {' '.join(args)} failed:\n{out.stderr}")
    return out


def grey(path, size=None):
    img = Image.open(path).convert("L")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


def cut_grid(path, n, size):
    """The n cells of a grid written by `easel sample` (2 px gaps, ceil(sqrt(n)) columns)."""
    img = grey(path)
    cols = int(np.ceil(np.sqrt(n)))
    gap = 2
    return np.stack([
        img[gap + (i // cols) * (size + gap):][:size, gap + (i % cols) * (size + gap):][:, :size]
        for i in range(n)
    ])


def real_renders(binary, sketch, count, size, tmp):
    """{class or "": [n, size, size]} of `easel dataset` renders at seeds from 10⁶ on."""
    folder = os.path.join(tmp, "real")
    easel(binary, "dataset", sketch, "-n", str(count), "--size", str(size), "--seed", "1000000", "-o", folder)
    out = {}
    for root, _, files in os.walk(folder):
        pngs = sorted(f for f in files if f.endswith(".png"))
        if pngs:
            cls = os.path.relpath(root, folder)
            out["" if cls == "." else cls] = np.stack([grey(os.path.join(root, f), size) for f in pngs])
    return out


def tiles(images, tile):
    """Every tile of every image, binarised: [n, tiles, tile*tile] booleans."""
    n, h, w = images.shape
    t = images[:, : h // tile * tile, : w // tile * tile] > 0.5
    t = t.reshape(n, h // tile, tile, w // tile, tile).transpose(0, 1, 3, 2, 4)
    return t.reshape(n, -1, tile * tile)


def distinct_tiles(images, tile, tolerance):
    """The distinct binarised tiles of real renders (tiles within the tolerance merge)."""
    kinds = []
    limit = tolerance * tile * tile
    for t in tiles(images, tile).reshape(-1, tile * tile):
        if not any(np.count_nonzero(t != k) <= limit for k in kinds):
            kinds.append(t)
    return np.stack(kinds)


def tile_validity(samples, kinds, tile, tolerance):
    """(fraction of valid tiles, fraction of samples with every tile valid)."""
    t = tiles(samples, tile)  # [n, m, p]
    dist = (t[:, :, None, :] != kinds[None, None]).sum(-1).min(-1)  # [n, m]
    ok = dist <= tolerance * tile * tile
    return ok.mean(), ok.all(1).mean()


def edge_length(images):
    """Mean length of the black-white boundary per image (scikit-image's perimeter estimate,
    which counts a straight diagonal at its length): ragged edges and specks add to it."""
    from skimage.measure import perimeter
    return np.mean([(perimeter(i > 0.5) + perimeter(i <= 0.5)) / 2 for i in images])


def grey_fraction(images):
    return ((images > 0.25) & (images < 0.75)).mean()


def mean_pairwise(images):
    flat = images.reshape(len(images), -1).astype(np.float64)
    sq = (flat ** 2).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0))
    return d.sum() / (len(images) * (len(images) - 1))


def model_info(model):
    with open(os.path.join(model, "spec.json")) as f:
        spec = json.load(f)
    # A finished run or model has generator.safetensors; a run still training, a checkpoint.
    for name in ("generator.safetensors", "checkpoints/latest.safetensors"):
        path = os.path.join(model, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            return spec, json.loads(header.get("__metadata__", {}).get("classes", "[]"))
    sys.exit(f"{model}: no generator.safetensors or checkpoints/latest.safetensors")


def data_sketch(model, spec, given):
    if given:
        return given
    # spec.json records a sketch-made training set as {"Sketch": {"path": ..., "count": ...}}.
    data = spec.get("data", {})
    source = data.get("Sketch", {}) if isinstance(data, dict) else {}
    path = source.get("path") if isinstance(source, dict) else None
    if not path:
        sys.exit(f"{model}: spec.json names no data sketch; pass --sketch")
    for candidate in (path, os.path.join(ROOT, path), os.path.join(ROOT, "sketches", os.path.basename(path))):
        if os.path.isfile(candidate):
            return candidate
    sys.exit(f"{model}: its data sketch {path} is not here; pass --sketch")


def tile_of(sketch):
    """The sketch's tile side in pixels (a Truchet sketch keeps it at any size)."""
    m = re.search(r"\btile:\s*(\d+)", open(sketch).read())
    if not m:
        sys.exit(f"{sketch}: no `tile:` to judge tiles by; pass --tile")
    return int(m.group(1))


def which(args):
    """`easel sample`'s choice of a run's generator (--raw, --checkpoint) and --truncation."""
    return ((["--raw"] if args.raw else []) + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
            + (["--truncation", str(args.truncation)] if args.truncation != 1.0 else []))


def judge_truchet(args):
    spec, _ = model_info(args.model)
    size = spec["image_size"]
    sketch = data_sketch(args.model, spec, args.sketch)
    tile = args.tile or tile_of(sketch)
    draw = args.size or size
    with tempfile.TemporaryDirectory() as tmp:
        real = np.concatenate(list(real_renders(args.easel, sketch, args.train, size, tmp).values()))
        kinds = distinct_tiles(real, tile, args.tolerance)
        real_valid, real_clean = tile_validity(real, kinds, tile, args.tolerance)
        grid = os.path.join(tmp, "samples.png")
        sample_args = ["sample", args.model, "-n", str(args.n), "--seed", str(args.seed), "-o", grid,
                       *which(args)]
        if args.size:
            sample_args += ["--size", str(args.size)]
        easel(args.easel, *sample_args)
        drawn = cut_grid(grid, args.n, draw)
        shrunk = np.stack([
            np.asarray(Image.fromarray((s * 255).round().astype(np.uint8)).resize((size, size), Image.BOX),
                       dtype=np.float32) / 255.0
            for s in drawn
        ]) if draw != size else drawn
        valid, clean = tile_validity(shrunk, kinds, tile, args.tolerance)
        g = grey_fraction(drawn)
        real_big = edges = None
        if draw != size:
            # The same tilings drawn at the sample's size: tiles scaled with the picture.
            scaled = os.path.join(tmp, "scaled.rhai")
            with open(sketch) as f:
                text = re.sub(r"\btile:\s*\d+", f"tile: {tile * draw // size}", f.read())
            with open(scaled, "w") as f:
                f.write(text)
            big = np.concatenate(list(real_renders(args.easel, scaled, 16, draw, os.path.join(tmp, "big")).values()))
            real_big = grey_fraction(big)
            edges = edge_length(drawn) / edge_length(big)
            # The same seeds at the training size, enlarged pixel by pixel: a staircase.
            blocky = np.stack([np.asarray(Image.fromarray((r * 255).round().astype(np.uint8))
                                          .resize((draw, draw), Image.NEAREST), dtype=np.float32) / 255.0
                               for r in real[:len(big)]])
            staircase = edge_length(blocky) / edge_length(big)
    print(f"judge: {len(kinds)} distinct {tile}x{tile} tiles in {len(real)} real renders at {size} px "
          f"(real renders: valid {real_valid:.3f}, clean {real_clean:.3f}); tolerance {args.tolerance:.0%}")
    floor = f" (real renders at {draw} px: {real_big:.3f})" if real_big is not None else ""
    print(f"{args.model}: {args.n} samples at {draw} px, seed {args.seed}: valid tiles {valid:.3f}, "
          f"clean samples {clean:.3f}, grey pixels {g:.3f}{floor}")
    if edges is not None:
        print(f"edges at {draw} px: {edges:.2f}x the length of real renders' (1.00: as straight and "
              f"clean; real {size}-px renders enlarged pixel by pixel: {staircase:.2f})")
    return 0 if valid >= args.min_valid and g <= args.max_grey else 1


def judge_classes(args):
    from skimage.feature import hog
    from sklearn.svm import SVC

    spec, classes = model_info(args.model)
    if len(classes) < 2:
        sys.exit(f"{args.model}: not a conditional generator (classes {classes})")
    size = spec["image_size"]
    sketch = data_sketch(args.model, spec, args.sketch)
    tile = args.tile or tile_of(sketch)

    def features(images):
        return np.stack([np.concatenate([hog(im, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2)),
                                         im.ravel()]) for im in images])

    with tempfile.TemporaryDirectory() as tmp:
        renders = real_renders(args.easel, sketch, 2 * args.train * len(classes), size, tmp)
        names = sorted(renders)
        if names != sorted(classes):
            sys.exit(f"{sketch} draws classes {names}; {args.model} was trained on {classes}")
        xs, ys, tx, ty = [], [], [], []
        for k, name in enumerate(names):
            imgs, half = renders[name], len(renders[name]) // 2
            xs.append(features(imgs[:half]))
            ys += [k] * half
            tx.append(features(imgs[half:]))
            ty += [k] * (len(imgs) - half)
        clf = SVC(kernel="rbf", C=10.0, gamma="scale").fit(np.concatenate(xs), ys)
        held_out = (clf.predict(np.concatenate(tx)) == np.array(ty)).mean()
        print(f"judge: HOG + RBF SVM on {len(ys)} real renders, held-out real accuracy {held_out:.3f}; "
              f"tiles {tile}x{tile}, tolerance {args.tolerance:.0%}")
        print(f"{'class':<12} {'recognised':>10} {'valid':>7} {'clean':>7} {'grey':>7} {'diversity':>10}"
              "   (real renders: valid, clean, grey)")
        ok = True
        for k, name in enumerate(names):
            grid = os.path.join(tmp, f"{name}.png")
            easel(args.easel, "sample", args.model, "--class", name, "-n", str(args.n), "--seed", str(args.seed),
                  "-o", grid, *which(args))
            samples = cut_grid(grid, args.n, size)
            real = renders[name]
            kinds = distinct_tiles(real[: len(real) // 2], tile, args.tolerance)
            recognised = (clf.predict(features(samples)) == k).mean()
            valid, clean = tile_validity(samples, kinds, tile, args.tolerance)
            diversity = mean_pairwise(samples) / mean_pairwise(real[len(real) // 2:][: args.n])
            g = grey_fraction(samples)
            held = real[len(real) // 2:]
            real_valid, real_clean = tile_validity(held, kinds, tile, args.tolerance)
            bad = recognised < args.min_recognised or diversity < args.min_diversity or valid < args.min_valid
            ok &= not bad
            print(f"{name:<12} {recognised:>10.2f} {valid:>7.3f} {clean:>7.3f} {g:>7.3f} {diversity:>10.2f}"
                  f"   ({real_valid:.3f}, {real_clean:.3f}, {grey_fraction(held):.3f})"
                  + ("  <- below the bar" if bad else ""))
    return 0 if ok else 1


def load_pictures(folder, size, background, limit, seed):
    """Every picture under `folder` (any depth) as RGB in [0, 1], composited over
    `background` and shrunk to size x size by area averaging (size None: as they are);
    unreadable files skipped; at most `limit`, in an order shuffled by `seed`."""
    paths = sorted(
        os.path.join(d, f)
        for d, _, files in os.walk(folder)
        for f in files
        if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"))
    )
    rng = np.random.default_rng(seed)
    rng.shuffle(paths)
    out = []
    for path in paths:
        try:
            img = Image.open(path).convert("RGBA")
        except OSError:
            continue
        canvas = Image.new("RGBA", img.size, tuple(background) + (255,))
        img = Image.alpha_composite(canvas, img).convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BOX)
        out.append(np.asarray(img, dtype=np.float32) / 255.0)
        if len(out) == limit:
            break
    if len(out) < 16:
        sys.exit(f"{folder}: {len(out)} readable pictures, too few to judge")
    return np.stack(out)


def cut_grid_rgb(path, n, size, background=(255, 255, 255)):
    """As cut_grid, in colour; a 4-channel model's samples composited over `background`,
    as the real pictures are."""
    grid = Image.open(path).convert("RGBA")
    canvas = Image.new("RGBA", grid.size, tuple(background) + (255,))
    img = np.asarray(Image.alpha_composite(canvas, grid).convert("RGB"), dtype=np.float32) / 255.0
    cols = int(np.ceil(np.sqrt(n)))
    gap = 2
    return np.stack([
        img[gap + (i // cols) * (size + gap):][:size, gap + (i % cols) * (size + gap):][:, :size]
        for i in range(n)
    ])


def laplacian_pyramid(images, min_size=16):
    """Levels of [N, H, W, C] images: band-pass levels, then the smallest Gaussian level."""
    k = np.array([1, 4, 6, 4, 1], np.float32) / 16

    def blur(x):
        pad = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
        x = sum(k[i] * pad[:, i:i + x.shape[1], :, :] for i in range(5))
        x = np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
        return sum(k[i] * x[:, :, i:i + pad.shape[2] - 4, :] for i in range(5))

    levels, g = [], images
    while g.shape[1] > min_size:
        small = blur(g)[:, ::2, ::2, :]
        up = np.zeros_like(g)
        up[:, ::2, ::2, :] = small * 4
        levels.append(g - blur(up))
        g = small
    levels.append(g)
    return levels


def patch_descriptors(level, per_image, rng, side=7):
    """`per_image` random side x side patches of each image: [patches, side * side, channels]."""
    n, h, w, c = level.shape
    ys = rng.integers(0, h - side + 1, (n, per_image))
    xs = rng.integers(0, w - side + 1, (n, per_image))
    dy, dx = np.mgrid[0:side, 0:side]
    rows = ys[:, :, None, None] + dy
    cols = xs[:, :, None, None] + dx
    patches = level[np.arange(n)[:, None, None, None], rows, cols]  # [n, per, side, side, c]
    return patches.reshape(-1, side * side, c)


def swd(a, b, seed=0, per_image=128, directions=512, units="each"):
    """Sliced Wasserstein distance x1000 between two sets of [N, H, W, C] images in
    [0, 1], averaged over the pyramid's levels (Karras et al. 2018). `b` is the real set.

    units "each": each set's descriptors normalised per channel by that set's own mean and
    deviation, as the paper does: a shift of colour or contrast common to all samples is
    normalised away. "real": both sets in the real pictures' units (their mean and
    deviation), so such a shift counts."""
    rng = np.random.default_rng(seed)
    scores = []
    for la, lb in zip(laplacian_pyramid(a), laplacian_pyramid(b)):
        da = patch_descriptors(la, per_image, rng)
        db = patch_descriptors(lb, per_image, rng)
        mean, std = db.mean(axis=(0, 1)), db.std(axis=(0, 1)) + 1e-8
        if units == "each":
            da = (da - da.mean(axis=(0, 1))) / (da.std(axis=(0, 1)) + 1e-8)
        else:
            da = (da - mean) / std
        db = (db - mean) / std
        da, db = da.reshape(len(da), -1), db.reshape(len(db), -1)
        n = min(len(da), len(db))
        da, db = da[rng.permutation(len(da))[:n]], db[rng.permutation(len(db))[:n]]
        dirs = rng.standard_normal((da.shape[1], directions)).astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
        pa, pb = np.sort(da @ dirs, axis=0), np.sort(db @ dirs, axis=0)
        scores.append(np.abs(pa - pb).mean())
    return 1000 * float(np.mean(scores))


def nearest_distance(queries, pool, exclude_self=False):
    q = queries.reshape(len(queries), -1)
    p = pool.reshape(len(pool), -1)
    d = (q * q).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2 * q @ p.T
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return np.sqrt(np.maximum(d.min(axis=1), 0))


def judge_pictures(args):
    """A run or model folder (samples drawn by `easel sample`), or a folder of pictures
    another program generated (then --data names the real pictures)."""
    is_model = os.path.isfile(os.path.join(args.model, "spec.json"))
    spec = model_info(args.model)[0] if is_model else {}
    source = spec.get("data", {}).get("Folder", {}) if isinstance(spec.get("data"), dict) else {}
    folder = args.data or source.get("path")
    if not folder:
        sys.exit(f"{args.model}: no folder of real pictures named; pass --data")
    if not os.path.isdir(folder) and os.path.isdir(os.path.join(ROOT, folder)):
        folder = os.path.join(ROOT, folder)
    background = source.get("background") or [255, 255, 255]
    if is_model:
        size = spec["image_size"]
        real = load_pictures(folder, size, background, args.real, seed=0)
        n = min(args.n, len(real) // 2)
        with tempfile.TemporaryDirectory() as tmp:
            grid = os.path.join(tmp, "samples.png")
            easel(args.easel, "sample", args.model, "-o", grid, "-n", str(n), "--seed",
                  str(args.seed), *which(args))
            samples = cut_grid_rgb(grid, n, size, background)
    else:
        samples = load_pictures(args.model, None, background, args.n, seed=args.seed)
        size = samples.shape[1]
        real = load_pictures(folder, size, background, args.real, seed=0)
        samples = samples[:min(args.n, len(real) // 2)]
        n = len(samples)
    half = len(real) // 2
    a, b = real[:half], real[half:2 * half]
    score = swd(samples, real[:max(n, half)])
    floor = swd(a, b)
    score_real = swd(samples, real[:max(n, half)], units="real")
    floor_real = swd(b, a, units="real")  # against the samples' reference, in its units
    copying = float(np.median(nearest_distance(samples, real))
                    / np.median(nearest_distance(real, real, exclude_self=True)))
    print(f"{args.model}: {n} samples against {len(real)} pictures of {folder} at {size}px")
    print(f"  swd      {score:8.1f}   (two halves of the pictures: {floor:.1f})")
    print(f"  swd real {score_real:8.1f}   (in the real pictures' units; two halves: {floor_real:.1f})")
    print(f"  copying  {copying:8.2f}   (bar >= {args.min_copying})")
    ok = (copying >= args.min_copying
          and (args.max_swd is None or score <= args.max_swd)
          and (args.max_swd_real is None or score_real <= args.max_swd_real))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("judge", choices=["truchet", "classes", "pictures"])
    ap.add_argument("model", help="a model folder or run directory")
    ap.add_argument("--sketch", help="the data sketch (default: the one spec.json names)")
    ap.add_argument("--easel", default=os.path.join(ROOT, "target/release/easel"))
    ap.add_argument("-n", type=int, default=64, help="samples (per class)")
    ap.add_argument("--seed", type=int, default=1, help="the samples' seed")
    ap.add_argument("--size", type=int, help="truchet: draw samples at this size (CPPN generators)")
    ap.add_argument("--raw", action="store_true", help="a run's trained weights, not their moving average")
    ap.add_argument("--checkpoint", help="a run's best, latest or step_N (as `easel sample --checkpoint`)")
    ap.add_argument("--truncation", type=float, default=1.0, help="as `easel sample --truncation` (a factor on the model's own sample_scale)")
    ap.add_argument("--tile", type=int, help="tile side at the training size (default: from the sketch)")
    ap.add_argument("--train", type=int, default=600, help="real renders (per class) the judge learns from")
    ap.add_argument("--tolerance", type=float, default=0.06)
    ap.add_argument("--min-valid", type=float, default=0.95)
    ap.add_argument("--max-grey", type=float, default=0.03)
    ap.add_argument("--min-recognised", type=float, default=0.9)
    ap.add_argument("--min-diversity", type=float, default=0.8)
    ap.add_argument("--data", help="pictures: the real pictures (default: the folder spec.json names)")
    ap.add_argument("--real", type=int, default=2000, help="pictures: at most this many real pictures")
    ap.add_argument("--max-swd", type=float, help="pictures: the bar for swd (none by default)")
    ap.add_argument("--max-swd-real", type=float, help="pictures: the bar for swd real (none by default)")
    ap.add_argument("--min-copying", type=float, default=0.5)
    args = ap.parse_args()
    judges = {"truchet": judge_truchet, "classes": judge_classes, "pictures": judge_pictures}
    return judges[args.judge](args)


if __name__ == "__main__":
    sys.exit(main())
