"""Pack what ``benchmarks/bench_protection.py`` reads, small enough to travel to a GPU machine.

A lent GPU machine cannot read ``../shared`` and takes at most 64 MiB with it. The protection
benchmark measures only the first ``--attack-photos`` + ``--measure`` held-out photos of the
ImageNet sample (places 700.. of the seed-0 permutation), so this copies exactly those files byte
for byte and writes every other photo as a 16x16 grey placeholder: the folder lists the same names,
the same split picks the same photos, and the benchmark run there with ``--shared OUT`` measures the
same pixels as here. The three encoders it measures with are copied beside them.

    python benchmarks/gpu/pack_bench_photos.py ../shared .devdata/bench --photos 124
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from spdesk.core.train import find_photos, split_photos

MODELS = (
    "taesd/taesd_f8e4m3.safetensors",
    "tae/taef2_encoder.safetensors",
    "tae/taesana_encoder.safetensors",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shared", type=Path, help="the shared assets (../shared)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--photos", type=int, default=124, help="held-out photos copied")
    args = parser.parse_args()
    source = args.shared / "data" / "imagenet-sample"
    photos = find_photos(source)
    _, held_out = split_photos(photos, 0.7, 0, None)
    kept = set(held_out[: args.photos])
    total = 0
    for path in photos:
        target = args.out / "data" / "imagenet-sample" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path in kept:
            shutil.copyfile(path, target)
            total += target.stat().st_size
        else:
            Image.new("RGB", (16, 16), (128, 128, 128)).save(target, quality=90)
    for model in MODELS:
        target = args.out / "models" / model
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.shared / "models" / model, target)
    placeholders = len(photos) - len(kept)
    print(f"{len(kept)} held-out photos ({total / 2**20:.1f} MiB), {placeholders} placeholders")


if __name__ == "__main__":
    main()
