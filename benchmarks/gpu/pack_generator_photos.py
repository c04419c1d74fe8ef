"""Pack the generator's training photos small enough to travel to a GPU machine.

A GPU machine lent for a few minutes cannot read ``../shared`` and takes at most 64 MiB with it.
The generator trainer loads each training photo at a 384 px short side
(:func:`spdesk.core.train.load_working_view`), so this writes exactly that view (same Lanczos
resize) as a JPEG of quality 85 (4:2:0, as most photos are; 33 MiB for the 700) under the photo's
own relative name. The held-out photos (the ones ``split_photos(..., 0.7, seed 0)`` does not train
on, which the protection benchmark measures) are written as 16x16 grey placeholders: the folder
then lists the same names in the same order, the same split picks the same 700 photos, and no held-
out pixel leaves this machine.

    python benchmarks/gpu/pack_generator_photos.py ../shared/data/imagenet-sample .devdata/photos
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from spdesk.core.train import find_photos, load_working_view, split_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--view", type=int, default=384)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    photos = find_photos(args.photos)
    train, held_out = split_photos(photos, 0.7, 0, None)
    for path in held_out:
        target = args.out / path.relative_to(args.photos)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (128, 128, 128)).save(target, quality=90)
    total = 0
    for path in train:
        target = args.out / path.relative_to(args.photos)
        target.parent.mkdir(parents=True, exist_ok=True)
        view = load_working_view(path, args.view).permute(1, 2, 0).numpy()
        Image.fromarray(view).save(target, quality=args.quality)
        total += target.stat().st_size
    print(f"{len(train)} training views ({total / 2**20:.1f} MiB), {len(held_out)} placeholders")


if __name__ == "__main__":
    main()
