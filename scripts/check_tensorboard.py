#!/usr/bin/env python3
"""Reads an easel run directory with TensorBoard's own loader and checks it against the
run's metrics.jsonl: every number a scalar at its step (no step twice, in order), the
sample grids as images, the sketch as text, the sketch's keys as hparams.

    pip install tensorboard        # the reader under test; nothing of easel's is used
    python3 scripts/check_tensorboard.py runs/gan_truchet-20261206-101010 [...]

Exit 0 when every run checks out; otherwise each problem is printed and the exit is 1.
"""

import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

# metrics.jsonl key -> TensorBoard tag (src/run/tensorboard.rs).
TAGS = {
    "d_loss": "loss/D",
    "g_loss": "loss/G",
    "d_real": "D/real",
    "d_fake": "D/fake",
    "lr_g": "lr/G",
    "lr_d": "lr/D",
    "imgs_per_s": "speed/images_per_s",
    "epoch": "data/epoch",
    "aug_p": "augment/p",
    "swd": "swd/ema",
    "swd_raw": "swd/raw",
    "style_ambiguity": "can/style_ambiguity",
    "reconstruction": "vae/reconstruction",
    "kl": "vae/kl",
    "g_grad_norm": "grad/G_norm",
}


def expected_scalars(metrics):
    """tag -> [(step, value)] from metrics.jsonl."""
    want = {}
    for m in metrics:
        for key, value in m.items():
            if key in ("step", "time"):
                continue
            if key == "classes":
                for c in value:
                    for field, v in c.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            want.setdefault(f"class/{c['name']}/{field}", []).append((m["step"], v))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                want.setdefault(TAGS.get(key, key), []).append((m["step"], value))
    return want


def check(run):
    problems = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    acc = event_accumulator.EventAccumulator(run, size_guidance={
        event_accumulator.SCALARS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.TENSORS: 0,
    })
    acc.Reload()
    tags = acc.Tags()
    want = expected_scalars(metrics)
    for tag, points in want.items():
        if tag not in tags["scalars"]:
            problems.append(f"scalar {tag} missing")
            continue
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        steps = [s for s, _ in got]
        if steps != sorted(set(steps)):
            problems.append(f"scalar {tag}: steps repeated or out of order: {steps[:20]}...")
        if steps != [s for s, _ in points]:
            problems.append(f"scalar {tag}: steps {steps[:10]}... differ from metrics.jsonl's {[s for s, _ in points][:10]}...")
            continue
        for (s, v), (_, w) in zip(got, points):
            if not math.isclose(v, w, rel_tol=1e-6, abs_tol=1e-30) and not (math.isnan(v) and math.isnan(w)):
                # Stored as float32.
                if abs(v - w) > 1e-6 * max(1.0, abs(w)):
                    problems.append(f"scalar {tag} at step {s}: {v} != {w}")
                    break
    samples = sorted(int(f[5:11]) for f in os.listdir(os.path.join(run, "samples")) if f.endswith(".png"))
    if "samples" not in tags["images"]:
        problems.append("no sample images")
    else:
        image_steps = [e.step for e in acc.Images("samples")]
        if image_steps != samples:
            problems.append(f"image steps {image_steps} differ from samples/ {samples}")
        for e in acc.Images("samples"):
            if not e.encoded_image_string.startswith(b"\x89PNG"):
                problems.append(f"image at step {e.step} is not a PNG")
    if "sketch" not in tags["tensors"]:
        problems.append("no sketch text")
    else:
        text = acc.Tensors("sketch")[-1].tensor_proto.string_val[0].decode()
        with open(os.path.join(run, "sketch.rhai")) as f:
            first = f.readline().strip()
        if first and first not in text:
            problems.append("the sketch text does not hold sketch.rhai")
    content = acc.PluginTagToContent("hparams")
    start = content.get("_hparams_/session_start_info")
    if start is None:
        problems.append("no hparams session start")
    else:
        data = plugin_data_pb2.HParamsPluginData.FromString(start)
        hp = data.session_start_info.hparams
        with open(os.path.join(run, "spec.json")) as f:
            spec = json.load(f)
        for key in ("steps", "batch", "seed"):
            if key in spec and (key not in hp or hp[key].number_value != spec[key]):
                problems.append(f"hparam {key} missing or different from spec.json")
    n_scalars = sum(len(acc.Scalars(t)) for t in tags["scalars"])
    print(f"{run}: {len(tags['scalars'])} scalar tags ({n_scalars} points, steps "
          f"{metrics[0]['step'] if metrics else '-'}..{metrics[-1]['step'] if metrics else '-'}), "
          f"{len(samples)} images, sketch text, {len(start and plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams or [])} hparams"
          + ("" if not problems else f"; {len(problems)} problems"))
    for p in problems:
        print("  " + p)
    return not problems


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    ok = all([check(run) for run in sys.argv[1:]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
