"""Diagnostic: how much of its budget the generator's output uses, before and after fine-tuning.

Not a test. For held-out photos of ``../shared/data/imagenet-sample`` (places 800 on of the
seed-0 permutation, as in ``bench_protection.py``), prints the mean magnitude of the generator's
raw output (luminance, red-green, yellow-blue, each in [-1, 1]), the share of luminance outputs
beyond +-0.9 (saturated tanh, whose slope is ~0 so training cannot flip them), and the delta's
mean magnitude as a share of the per-pixel budget; then the same after ``--steps`` fine-tuning
steps against TAESD at a 256 px editor, and the share of signs those steps flipped.

    python benchmarks/bench_generator_saturation.py --photos 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spdesk.core.encoders import load_encoder
from spdesk.core.generator_file import bundled_generator_path
from spdesk.core.photo_finetune import PhotoFineTuner
from spdesk.core.photo_protect import GeneratorProtector
from spdesk.core.shaping import texture_budget
from spdesk.core.train import find_photos, split_photos

SHARED = Path(__file__).resolve().parents[2] / "shared"


def raw_and_delta(
    protector: GeneratorProtector, view: np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    """The raw output the protector composes for ``view``, and the delta (pixel units)."""
    seen: list[torch.Tensor] = []
    refine = protector.refine

    def keep(x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        seen.append(refine(x, raw).detach())
        return seen[-1]

    protector.refine = keep  # type: ignore[method-assign]
    delta = protector.working_delta(view)
    protector.refine = refine  # type: ignore[method-assign]
    return seen[0][0], delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--generator", type=Path, default=None, help="(default: the bundled one)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, rest = split_photos(find_photos(args.shared / "data" / "imagenet-sample"), 0.7, 0, None)
    encoder = load_encoder(str(args.shared / "models" / "taesd" / "taesd_f8e4m3.safetensors"))
    key = bytes(32)  # any fixed key: the figures do not depend on which
    path = args.generator or bundled_generator_path()
    plain = GeneratorProtector(path, key=key)
    tuned = PhotoFineTuner(path, encoder, args.steps, key=key, editor_sides=(256,))
    print("photo | output | mean |raw| L, RG, YB | |L| > 0.9 | energy / budget | signs flipped")
    for photo in rest[100 : 100 + args.photos]:
        with Image.open(photo) as image:
            view = np.asarray(image.convert("RGB"))
        pixels = torch.from_numpy(view.copy()).permute(2, 0, 1)[None].float() / 255
        budget = texture_budget(pixels, plain.shaping)[0, 0].numpy() * plain.eps / 255
        start, _ = raw_and_delta(plain, view)
        for name, protector in (("generator", plain), (f"fine-tuned {args.steps}", tuned)):
            raw, delta = raw_and_delta(protector, view)
            magnitude = ", ".join(f"{v:.2f}" for v in raw.abs().mean((1, 2)).tolist())
            saturated = float((raw[0].abs() > 0.9).float().mean())
            energy = float((np.abs(delta).mean(0) / budget).mean())
            flipped = float((torch.sign(raw) != torch.sign(start)).float().mean())
            print(
                f"{photo.stem[:24]:24} | {name:13} | {magnitude} | {saturated:.2f} | "
                f"{energy:.2f} | {flipped:.2f}"
            )


if __name__ == "__main__":
    main()
