"""Benchmark: does the editor's resampling filter decide protection's strength? (not a test)

SD editors resize a photo with Pillow's Lanczos filter (diffusers' image processor; the
benchmark's editor does the same), while spdesk's generator training resizes with torch's
bilinear filter, as photo fine-tuning did until 2026-12-03. If the protection leaned on what
bilinear passes and Lanczos removes (or the reverse), it would lose strength between training and
use. This measures both on held-out photos (the same as ``bench_protection.py``), against TAESD:

1. photo mode's one-pass perturbation and random ±eps signs, each seen by an editor that resizes
   with Lanczos, bicubic or bilinear (Pillow), at 256 and 512 px: the gain over random signs under
   each filter;
2. photo fine-tuning with its loss seen through torch's bilinear resize and through Pillow's
   Lanczos (:mod:`spdesk.core.resample`, the product since 2026-12-03), measured by the Lanczos
   editor.

    python benchmarks/bench_editor_filter.py --measure 12 --steps 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_protection import SHARED, held_out
from PIL import Image

from spdesk.core.assessment import editor_latent, mode_protect, relative_change, sign_noise
from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.finetune import resize_view
from spdesk.core.generator_file import bundled_generator_path
from spdesk.core.photo_finetune import PhotoFineTuner
from spdesk.core.resample import lanczos_resize

SIZES = (256, 512)
FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def gains(
    encoder: Encoder,
    photos: list[np.ndarray],
    protected: list[np.ndarray],
    signs: list[np.ndarray],
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> str:
    """Mean latent distortion of the protected photos over that of random signs, per size."""
    cells = []
    for size in SIZES:
        ours, noise = [], []
        for photo, mine, sign in zip(photos, protected, signs, strict=True):
            clean = editor_latent(encoder, photo, size, resample)
            ours.append(relative_change(editor_latent(encoder, mine, size, resample), clean))
            noise.append(relative_change(editor_latent(encoder, sign, size, resample), clean))
        cells.append(
            f"{np.mean(ours):.4f} / {np.mean(noise):.4f} = {np.mean(ours) / np.mean(noise):.3f}x"
        )
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--measure", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="fine-tuning steps (0: skip part 2)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rest = held_out(args.shared / "data" / "imagenet-sample")
    chosen = rest[100 : 100 + args.measure]  # the README's photos: after the attack's 100
    photos = [np.asarray(Image.open(path).convert("RGB")) for path in chosen]
    taesd = args.shared / "models" / "taesd" / "taesd_f8e4m3.safetensors"
    encoder = load_encoder(str(taesd), "cpu")
    protect, eps, _ = mode_protect("photo")
    signs = [sign_noise(eps)(photo, index) for index, photo in enumerate(photos)]
    protected = [protect(photo, index) for index, photo in enumerate(photos)]
    print(
        f"{len(photos)} held-out photos, strength {eps:g}, TAESD; cells: latent distortion of "
        f"the protection / of random signs = gain, at {' | '.join(f'{s} px' for s in SIZES)}"
    )
    print("1. photo mode, the editor resizing with:")
    for name, resample in FILTERS.items():
        print(f"   {name:9s} {gains(encoder, photos, protected, signs, resample)}", flush=True)
    if args.steps < 1:
        return
    print(f"2. photo fine-tuning ({args.steps} steps, no JPEG term), its loss resizing with:")
    for name, resize in (("bilinear (torch)", resize_view), ("lanczos (product)", lanczos_resize)):
        tuner = PhotoFineTuner(
            bundled_generator_path(), encoder, args.steps, jpeg_quality=None, editor_resize=resize
        )
        started = time.perf_counter()
        tuned = [
            np.asarray(tuner.apply(Image.fromarray(photo), f"photo-{index}")[0])
            for index, photo in enumerate(photos)
        ]
        seconds = (time.perf_counter() - started) / len(photos)
        print(
            f"   {name:18s} {gains(encoder, photos, tuned, signs)}  {seconds:.1f} s a photo",
            flush=True,
        )


if __name__ == "__main__":
    main()
