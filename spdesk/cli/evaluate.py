"""``spdesk eval``: how strong, how visible and how robust a protection is, beside random noise.

Runs :func:`spdesk.core.assessment.assess` over the whole product path (protect the full photo,
let an editor resize and encode it): strength at each editor size, visibility (SSIMULACRA2, FLIP)
next to random signs, uniform noise and JPEG q75/q50, and what is kept after each attack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spdesk.cli.common import (
    EXIT_OK,
    ProgressPrinter,
    fine_tune_jpeg,
    perturbation_reference,
    print_json,
)

if TYPE_CHECKING:
    from spdesk.core.errors import ConfigError

DEFAULT_ATTACKS = "jpeg85,jpeg75,down0.5,blur1,median3,average"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="measure how strong, visible and robust a protection is on a folder of photos",
        description=(
            "Protect each photo (photo-specific mode by default, or a universal perturbation), "
            "let an editor resize it to each --sizes and encode it, and report the latent "
            "distortion and round-trip SSIM against random ±eps signs and uniform noise of the "
            "same strength, the visibility (SSIMULACRA2, FLIP; JPEG q75/q50 for scale) and the "
            "share of the advantage over random signs kept after each --attacks."
        ),
    )
    parser.add_argument("--photos", required=True, type=Path, help="folder of photos")
    parser.add_argument(
        "--encoder", required=True, help="'sd15', 'taesd', a folder or weights file"
    )
    parser.add_argument(
        "--mode", choices=("photo", "universal"), default=None,
        help="protection to measure (photo; universal when --perturbation is given)",
    )  # fmt: skip
    parser.add_argument(
        "--perturbation",
        type=perturbation_reference,
        default=None,
        metavar="FILE|NAME",
        help="universal pattern file, or the name of one in your library",
    )
    parser.add_argument("--generator", type=Path, default=None, help="photo modes' generator file")
    parser.add_argument(
        "--strength", type=float, default=None, metavar="EPS",
        help="at most EPS/255 change per colour value (default: 8, or the pattern file's own)",
    )  # fmt: skip
    parser.add_argument(
        "--fine-tune", type=int, default=None, metavar="STEPS",
        help="measure photo fine-tuning (spdesk protect --fine-tune STEPS) against --encoder",
    )  # fmt: skip
    parser.add_argument(
        "--fine-tune-jpeg", default=None, metavar="Q",
        help="with --fine-tune: its JPEG term's quality, or off (as spdesk protect's)",
    )  # fmt: skip
    parser.add_argument("--sizes", default="256,512", help="editor short sides in pixels (256,512)")
    parser.add_argument(
        "--working-size", type=int, default=512, metavar="PX",
        help="the protection's editor view, as spdesk protect's (512)",
    )  # fmt: skip
    parser.add_argument(
        "--attacks", default="", metavar="LIST",
        help=f"comma-separated attacks, e.g. {DEFAULT_ATTACKS},regenerate (none by default); "
        "average subtracts what --attack-photos protected alike share, regenerate[K] protects "
        "each photo again with K keys of the attacker's own (8) and subtracts what they share, "
        "known subtracts the universal pattern file itself (public: the bundled one ships)",
    )  # fmt: skip
    parser.add_argument(
        "--attack-photos", type=int, default=None, metavar="N",
        help="photos the averaging attack collects (100; taken before the measured ones)",
    )  # fmt: skip
    parser.add_argument("--transfer", default="", help="other encoders to report latent gain on")
    parser.add_argument("--max-photos", type=int, default=32, help="photos measured (32)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _sizes(text: str) -> list[int]:
    from spdesk.core.errors import ConfigError

    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(size < 64 or size % 8 or size > 2048 for size in sizes):
        raise ConfigError(
            f"--sizes must list editor sizes that are multiples of 8 from 64 to 2048, got {text!r}."
        )
    return sizes


def _no_attack_photos(folder: Path, found: int, asked: int) -> ConfigError:
    """Why the averaging attack has no photos to fit on: it needs its own, taken before the
    measured ones, and takes at most half the folder."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.files import shown

    if asked == 0:
        return ConfigError(
            "The averaging attack needs photos of its own to fit on, and --attack-photos is 0.",
            hint="Give --attack-photos 1 or more, or leave average out of --attacks.",
        )
    return ConfigError(
        f"The averaging attack needs photos of its own to fit on, beyond the measured ones; "
        f"{shown(folder)} has {found} photo(s) and it takes at most half of them.",
        hint="Put at least 2 photos in the folder (more for a fair attack: it collects "
        "--attack-photos of them, 100 by default), or leave average out of --attacks.",
    )


def _mode(args: argparse.Namespace) -> str:
    """The mode measured; refuses an option it would ignore, naming the option and what chose
    the mode (an explicit --mode, --perturbation or --fine-tune)."""
    if args.fine_tune is not None:
        if args.mode == "universal":
            raise _unused("--mode universal", "--fine-tune", "photo fine-tuning")
        if args.perturbation is not None:
            raise _unused("--perturbation", "--fine-tune", "photo fine-tuning")
        return "photo-finetune"
    mode: str = args.mode or ("universal" if args.perturbation else "photo")
    if mode == "photo" and args.perturbation is not None:
        raise _unused("--perturbation", "--mode photo", "the photo-specific protection")
    if mode == "universal" and args.generator is not None:
        chosen = "--mode universal" if args.mode else "--perturbation"
        raise _unused("--generator", chosen, "a universal pattern")
    return mode


def _unused(option: str, chosen_by: str, measured: str) -> ConfigError:
    from spdesk.core.errors import ConfigError

    return ConfigError(
        f"{chosen_by} measures {measured}, which does not use {option}: leave out {option}, "
        f"or {chosen_by}."
    )


def run(args: argparse.Namespace) -> int:
    from spdesk.core.assessment import assess, mode_protect
    from spdesk.core.attacks import parse_attacks
    from spdesk.core.encoders import load_encoder
    from spdesk.core.errors import ConfigError
    from spdesk.core.evaluate import MEASURE_MIN_SIDE, load_full_photos
    from spdesk.core.files import shown
    from spdesk.core.train import find_photos

    sizes = _sizes(args.sizes)
    attacks = parse_attacks(args.attacks)
    if args.fine_tune_jpeg is not None and args.fine_tune is None:
        raise ConfigError("--fine-tune-jpeg is only used with --fine-tune STEPS.")
    mode = _mode(args)
    if not 1 <= args.max_photos <= 10_000:
        raise ConfigError(f"--max-photos must be between 1 and 10000, got {args.max_photos}.")
    if args.attack_photos is not None and "average" not in attacks:
        raise ConfigError(
            "--attack-photos is the number of photos the averaging attack fits on, and "
            "--attacks has no average: it would be ignored.",
            hint="Add average to --attacks, or leave out --attack-photos.",
        )
    asked_attack = 100 if args.attack_photos is None else args.attack_photos
    if not 0 <= asked_attack <= 10_000:
        raise ConfigError(f"--attack-photos must be between 0 and 10000, got {asked_attack}.")
    paths = find_photos(args.photos)
    collect = min(asked_attack, len(paths) // 2) if "average" in attacks else 0
    if "average" in attacks and not collect and paths:  # no photos at all: said below
        raise _no_attack_photos(args.photos, len(paths), asked_attack)
    # The averaging attack's photos first, then the measured ones after them; a file that
    # cannot be read is skipped and the next one taken ("No readable photos" came from a folder
    # whose first --max-photos files were broken).
    least = MEASURE_MIN_SIDE
    attack_photos, skipped = (
        load_full_photos(paths, limit=collect, min_side=least) if collect else ([], [])
    )
    rest = paths[len(attack_photos) + len(skipped) :]  # the files the attack's did not take
    photos, skipped_measured = load_full_photos(rest, limit=args.max_photos, min_side=least)
    skipped += skipped_measured
    for photo in skipped:
        print(f"Skipped {shown(photo.path)}: {photo.reason}", file=sys.stderr)
    if not photos:
        raise ConfigError(f"No readable photos found in {shown(args.photos)}.")
    if collect and not attack_photos:
        raise ConfigError(
            f"None of the {collect} photo(s) set aside for the averaging attack could be read."
        )
    if collect and len(attack_photos) < asked_attack:
        print(
            f"Note: the averaging attack fits on {len(attack_photos)} photo(s), not the "
            f"{asked_attack} asked (--attack-photos; it takes at most half the folder, before "
            "the measured ones). An attacker with more photos estimates the shared part better: "
            "what is kept after it is an optimistic figure.",
            file=sys.stderr,
        )
    protect, eps, label = mode_protect(
        mode, perturbation=args.perturbation, generator=args.generator, strength=args.strength,
        encoder=args.encoder, finetune_steps=8 if args.fine_tune is None else args.fine_tune,
        finetune_jpeg=fine_tune_jpeg(args.fine_tune_jpeg), working_size=args.working_size,
    )  # fmt: skip
    encoder = load_encoder(args.encoder, args.device)
    transfer = [load_encoder(spec, args.device) for spec in args.transfer.split(",") if spec]
    progress = ProgressPrinter(quiet=args.json)
    progress.line(
        f"Measuring {label} on {len(photos)} photo(s)"
        + (f", averaging attack fitted on {len(attack_photos)} others" if collect else "")
    )
    report = assess(
        photos, {label: protect}, encoder, eps=eps, sizes=sizes, attacks=attacks,
        attack_photos=attack_photos, transfer=transfer, view=args.working_size,
        on_photo=lambda done, total: progress.update("photos measured", done, total),
    )  # fmt: skip
    progress.close()
    # The file measured, if not the bundled one: the table's rows name only the mode.
    kind = "generator" if mode.startswith("photo") else "perturbation"
    measured = args.generator if kind == "generator" else args.perturbation
    if args.json:
        listed = {"skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped]}
        print_json(
            report.to_dict() | {"mode": mode} | ({kind: measured} if measured else {}) | listed
        )
    else:
        if measured:
            print(f"{kind}: {shown(measured)}")
        print(report.format())
    return EXIT_OK
