"""``spdesk eval``: the protection table of a perturbation against same-strength random noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from spdesk.cli.common import EXIT_OK, print_json


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="measure how much a perturbation disturbs an encoder on a folder of photos",
        description=(
            "Encode each photo with and without the perturbation (and with random noise of the "
            "same strength) and report latent distortion, round-trip SSIM/PSNR and visibility, "
            "with and without JPEG re-encoding."
        ),
    )
    parser.add_argument("--perturbation", required=True, type=Path, help="perturbation file")
    parser.add_argument("--photos", required=True, type=Path, help="folder of photos")
    parser.add_argument(
        "--encoder", required=True, help="'sd15', 'taesd', a folder or weights file"
    )
    parser.add_argument("--size", type=int, default=256, help="working view / crop size (256)")
    parser.add_argument("--jpeg", type=int, default=85, help="JPEG quality; 0 turns it off")
    parser.add_argument("--strength", type=float, default=None, help="eps in 8-bit steps")
    parser.add_argument("--max-photos", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baselines")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spdesk.core.encoders import load_encoder
    from spdesk.core.errors import ConfigError
    from spdesk.core.evaluate import evaluate_protection, load_eval_photos
    from spdesk.core.files import shown
    from spdesk.core.perturbation import load_perturbation
    from spdesk.core.train import find_photos

    if args.size < 8 or args.size % 8:
        raise ConfigError(f"--size must be a multiple of 8 pixels, got {args.size}.")
    if not 0 <= args.jpeg <= 100:
        raise ConfigError(f"--jpeg must be a quality from 1 to 100 (0 = off), got {args.jpeg}.")
    perturbation = load_perturbation(args.perturbation)
    paths = find_photos(args.photos)[: args.max_photos]
    if not paths:
        raise ConfigError(f"No photos found in {args.photos}.")
    photos, skipped = load_eval_photos(paths, args.size)
    for photo in skipped:
        print(f"Skipped {shown(photo.path)}: {photo.reason}", file=sys.stderr)
    encoder = load_encoder(args.encoder, args.device)
    eps = args.strength if args.strength is not None else perturbation.eps
    table = evaluate_protection(
        photos,
        encoder,
        perturbation.at_strength(args.strength),
        eps,
        jpeg_quality=args.jpeg or None,
        seed=args.seed,
    )
    if args.json:
        print_json(table.to_dict() | {"perturbation": str(args.perturbation)})
    else:
        print(table.format())
    return EXIT_OK
