"""Benchmark: how strong can protection get inside a perceptual budget? (not a test)

Photo fine-tuning (:mod:`spdesk.core.photo_finetune`) optimises each photo's perturbation
against TAESD inside a budget shape; with many steps it approaches the best any one-pass
generator inside that shape could do. This runs it with the bundled generator's own budget and
with looser ones (more budget on flat areas; the whole ±eps everywhere, luminance only), and
prints visibility and strength beside random ±eps signs (:func:`spdesk.core.assessment.assess`,
the same held-out photos as ``bench_protection.py``, the editor's TAESD at 256 and 512 px).

    python benchmarks/bench_budget_ceiling.py --measure 6 --steps 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from bench_protection import SHARED, held_out, tuned

from spdesk.core.assessment import assess
from spdesk.core.encoders import load_encoder
from spdesk.core.evaluate import load_full_photos
from spdesk.core.generator_file import bundled_generator_path
from spdesk.core.photo_finetune import PhotoFineTuner

LOOSER = {
    "bundled budget": {},
    "flat areas: half the budget": {"floor": 0.5},
    "full budget everywhere, luminance only": {
        "floor": 1.0,
        "colour": 0.0,
        "dark_ref": 0.0,
        "ceiling": 1.0,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared assets (../shared)")
    parser.add_argument("--measure", type=int, default=6)
    parser.add_argument("--attack-photos", type=int, default=100, help="skipped, as in the bench")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="where TAESD (and so fine-tuning) runs")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args()
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    rest = held_out(args.shared / "data" / "imagenet-sample")
    photos, _ = load_full_photos(rest[args.attack_photos : args.attack_photos + args.measure])
    taesd = load_encoder(
        str(args.shared / "models" / "taesd" / "taesd_f8e4m3.safetensors"), args.device
    )
    path = bundled_generator_path()
    base = PhotoFineTuner(path, taesd, args.steps).shaping
    candidates = {
        f"fine-tuned {args.steps}, {label}": tuned(
            PhotoFineTuner(path, taesd, args.steps, shaping=dataclasses.replace(base, **change))
        )
        for label, change in LOOSER.items()
    }
    report = assess(
        photos, candidates, taesd, eps=8.0, sizes=(256, 512),
        on_photo=lambda done, total: print(f"  measured {done}/{total}", flush=True),
        deadline=deadline,
    )  # fmt: skip
    print(f"bundled shaping: {base}")
    print(report.format())


if __name__ == "__main__":
    main()
