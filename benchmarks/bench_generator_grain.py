"""The held-out grain check that ``spdesk train-generator`` ends with, for generator files.

Not a test. For each FILE, the low-frequency share of its deltas on crops of the first 8 photos
the training holds out of ``../shared/data/imagenet-sample`` (``--split-seed 0``, the recipe's),
beside random signs under the file's shaping: what the training prints, so files trained before
the check, or elsewhere, can be compared with the line it warns at.

    python benchmarks/bench_generator_grain.py resources/generators/default.safetensors FILE...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from spdesk.core.photo_protect import load_generator
from spdesk.core.shaping import Shaping
from spdesk.core.train import split_photos, training_photos
from spdesk.core.train_generator import COARSE_SHARE, GeneratorTrainConfig, held_out_coarseness

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    photos = args.shared / "data" / "imagenet-sample"
    defaults = GeneratorTrainConfig()
    _, held_out = split_photos(training_photos(photos), defaults.split, defaults.split_seed, None)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"{'file':44s} low-frequency share  random signs  (warns above {COARSE_SHARE})")
    for path in args.files:
        model, spec = load_generator(path)
        config = GeneratorTrainConfig(eps=spec.eps, shaping=Shaping.from_settings(spec.shaping))
        check = held_out_coarseness(model, held_out, config, torch.device("cpu"))
        assert check is not None, "no held-out photo could be read"
        share, signs = check["low_frequency_share"], check["random_signs"]
        flag = "  coarse" if share > COARSE_SHARE else ""
        print(f"{path.name:44s} {share:19.4f}  {signs:12.4f}{flag}")


if __name__ == "__main__":
    main()
