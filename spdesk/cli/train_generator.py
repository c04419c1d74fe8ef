"""``spdesk train-generator``: train the photo-specific protection generator.

The same core call (:func:`spdesk.core.train_generator.train_generator`) that made the bundled
generator; its recipe is in ``resources/generators/RECIPE.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spdesk.cli.common import (
    EXIT_CANCELLED,
    EXIT_OK,
    ProgressPrinter,
    cancel_on_sigint,
    print_json,
)
from spdesk.core.jobs.events import count_of, left_out_phrase


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "train-generator",
        help="train the network that writes each photo its own protection",
        description=(
            "Train a protection generator against an encoder on a folder of photos: a small "
            "network that turns a photo and secret noise into a perturbation within the photo's "
            "perceptual budget (spdesk protect --mode photo --generator FILE uses it)."
        ),
    )
    parser.add_argument("photos", type=Path, help="folder of training photos")
    parser.add_argument("--out", required=True, type=Path, help="generator file to write")
    parser.add_argument(
        "--force", action="store_true",
        help="replace --out if it exists (without it, an existing file is never replaced: "
        "neither a generator trained before, the --init file included, nor a file of another "
        "kind)",
    )  # fmt: skip
    parser.add_argument(
        "--encoder", required=True,
        help="'taesd', 'sd15', a folder or file, or several, comma-separated (an ensemble: the "
        "strength term is averaged over them)",
    )  # fmt: skip
    parser.add_argument(
        "--init", type=Path, default=None,
        help="generator to start from (its network's width and blocks are kept)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=800, help="training steps (800)")
    parser.add_argument("--batch", type=int, default=6, help="crops per step (6)")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (128)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="Adam learning rate, decayed to 5%% (0.002)"
    )
    parser.add_argument("--eps", type=float, default=8.0, help="budget in 8-bit steps (8)")
    parser.add_argument(
        "--visibility",
        type=float,
        default=0.0,
        help="weight of the visibility term: the share of the change's energy a blur keeps (0)",
    )
    parser.add_argument(
        "--secrecy",
        type=float,
        default=0.5,
        help="weight of the secrecy term, which penalises two secret noises giving alike "
        "changes (0.5)",
    )
    parser.add_argument(
        "--floor", type=float, default=0.25, help="share of the budget flat areas get (0.25)"
    )
    parser.add_argument(
        "--colour",
        type=float,
        default=0.2,
        help="largest share of the budget colour may take (0.2)",
    )
    parser.add_argument(
        "--dark-ref",
        type=float,
        default=0.0,
        help="darkness masking: dark areas get less (0: off, the default)",
    )
    parser.add_argument(
        "--ceiling", type=float, default=1.0, help="largest share of eps any pixel may use (1)"
    )
    parser.add_argument(
        "--ssim", type=float, default=0.0, help="weight of a structural-similarity term (0)"
    )
    parser.add_argument(
        "--editor-scale", type=float, nargs=2, default=(0.5, 1.4), metavar=("LOW", "HIGH"),
        help="range of the editor's resize factor (0.5 1.4)",
    )  # fmt: skip
    parser.add_argument(
        "--editor-filter", choices=("bilinear", "lanczos", "mixed"), default="bilinear",
        help="how the training's editor resizes: torch's bilinear, Pillow's Lanczos, or either "
        "drawn per step (bilinear)",
    )  # fmt: skip
    parser.add_argument(
        "--lanczos-share", type=float, default=0.5,
        help="with --editor-filter mixed: the share of steps that resize with Lanczos (0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--jpeg", type=float, default=0.3, help="share of steps whose editor re-saves as JPEG (0.3)"
    )
    parser.add_argument("--jpeg-quality", type=int, default=60, help="lowest JPEG quality (60)")
    parser.add_argument(
        "--jpeg-first", type=float, default=0.0,
        help="share of JPEG steps that compress before the editor's resize, at the photo's own "
        "size, as a platform recompresses a posted photo (0)",
    )  # fmt: skip
    parser.add_argument(
        "--width", type=int, default=None,
        help="network width (48; with --init, the init file's, which it must match if given)",
    )  # fmt: skip
    parser.add_argument(
        "--blocks", type=int, default=None,
        help="residual blocks (3; with --init, the init file's, which it must match if given)",
    )  # fmt: skip
    parser.add_argument(
        "--time-limit", type=float, default=0.0, help="stop after this many minutes (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds every step (0)")
    parser.add_argument(
        "--split-seed", type=int, default=0,
        help="seeds which photos train and which are held out; the same for every stage (0)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spdesk.core.encoders import load_encoder
    from spdesk.core.files import shown
    from spdesk.core.generator import GeneratorConfig, shaping_to_dict
    from spdesk.core.generator_file import check_generator_destination, save_generator
    from spdesk.core.photo_protect import load_generator
    from spdesk.core.train import training_photo_folder
    from spdesk.core.train_generator import train_generator

    config = _config(args)
    _refuse_continuing_in_place(args)
    check_generator_destination(args.out, force=args.force)  # before minutes of training
    out_existed = args.out.exists()
    start = None
    if args.init:  # a network to start from keeps its own shape
        initial, initial_spec = load_generator(args.init)
        _check_init_network(args, initial_spec.network)
        start = initial.state_dict()
        config = replace(config, network=GeneratorConfig(**initial_spec.network))
    # Too few photos are said before the encoder loads.
    found, left_out = training_photo_folder(args.photos)
    if not args.json:  # the encoder and the photos load for a minute or two before step 1
        below = f"; {left_out_phrase(*_files_and_folders(left_out))} left out, listed below"
        print(
            f"Training a protection generator on {count_of(len(found), 'photo')} (some held "
            f"out to check it{below if left_out else ''}): loading the encoder and reading the "
            "photos...",
            file=sys.stderr,
            flush=True,
        )
        for item in left_out:  # not photos: as spdesk protect lists them
            print(f"Left out {shown(item.path)}: {shown(item.reason)}", file=sys.stderr)
    encoder = load_encoder(args.encoder, args.device)
    progress = ProgressPrinter(quiet=args.json)
    model, summary = train_generator(
        args.photos, encoder, config, start=start, stop=cancel_on_sigint(), found=found,
        on_step=lambda s: progress.update(
            f"step {s.step}/{s.steps} distortion {s.distortion:.3f}", s.step, s.steps
        ),
    )  # fmt: skip
    progress.close()
    # Not photos (as the text lists them): in the --json summary, not in the file's metadata.
    listed = [{"path": str(item.path), "reason": item.reason} for item in left_out]
    metadata = {"train": summary, "config": config.to_dict(), "encoder": encoder.id}
    if args.init:
        metadata["init"] = args.init.name
    # Stopped (Ctrl+C, a stop signal): what was learnt is kept, not over a file already there.
    stopped = bool(summary["stopped_early"])
    saved = args.out
    if stopped and (out_existed or args.out.exists()):
        saved = partial_path(args.out)
    save_generator(
        saved, model.state_dict(), eps=config.eps, network=config.network.to_dict(),
        shaping=shaping_to_dict(config.shaping), metadata=metadata,
    )  # fmt: skip
    _report(args, summary | {"left_out": listed}, config.steps, saved)
    return EXIT_CANCELLED if stopped else EXIT_OK


def _files_and_folders(left_out: Sequence[Any]) -> tuple[int, int]:
    """How many of the items left out are files, and how many are folders."""
    folders = sum(item.path.is_dir() and not item.path.is_symlink() for item in left_out)
    return len(left_out) - folders, folders


def partial_path(out: Path) -> Path:
    """Where a run stopped by Ctrl+C saves what it learnt when ``out`` is already there: a
    sibling named for it (``gen.partial.safetensors``, then ``gen.partial-2.safetensors``...)
    that does not exist yet, so that nothing already there is replaced."""
    from spdesk.core.errors import ConfigError

    for number in range(1, 10_000):
        tag = ".partial" if number == 1 else f".partial-{number}"
        candidate = out.with_name(f"{out.stem}{tag}{out.suffix}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise ConfigError(f"No free name for the stopped run's generator next to {out}.")


def _refuse_continuing_in_place(args: argparse.Namespace) -> None:
    """``--init g --out g`` would replace the network it starts from: a continuation that
    ends coarse (the same recipe can, with another seed) would leave nothing to go back to.
    Refused before training, as any file already at --out; --force allows it."""
    from spdesk.core.errors import ConfigError

    if args.force or args.init is None:
        return
    try:
        same = os.path.samefile(args.init, args.out)
    except OSError:  # either is not there: nothing would be replaced
        return
    if same:
        raise ConfigError(
            f"--out {args.out.name} is the --init file this run starts from, so it was not "
            "replaced: a continuation that ends coarse would leave nothing to go back to.",
            hint="Save the continued network under another name (--out), or add --force to "
            "replace the --init file.",
        )


def _check_init_network(args: argparse.Namespace, network: dict[str, int]) -> None:
    """Refuse --width or --blocks that differ from the --init file's network (its weights
    only fit its own shape; they were silently ignored)."""
    from spdesk.core.errors import ConfigError

    asked = {"width": args.width, "blocks": args.blocks}
    differ = [
        f"--{name} {value}"
        for name, value in asked.items()
        if value is not None and value != network.get(name)
    ]
    if differ:
        raise ConfigError(
            f"--init {args.init.name} is a network of width {network.get('width')} and "
            f"{network.get('blocks')} blocks; {' and '.join(differ)} ask for another shape, "
            "which its weights do not fit.",
            hint="Drop --width and --blocks to continue that network, or drop --init to train "
            "a new one of the shape asked for.",
        )


def _config(args: argparse.Namespace) -> Any:
    """The training settings the arguments ask for; ConfigError names a setting out of range."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.generator import GeneratorConfig
    from spdesk.core.shaping import Shaping
    from spdesk.core.train_generator import GeneratorTrainConfig

    if args.time_limit < 0:  # in minutes here, seconds in the core
        raise ConfigError(f"--time-limit must be >= 0 minutes, got {args.time_limit}.")
    try:
        shaping = Shaping(
            floor=args.floor, colour=args.colour, dark_ref=args.dark_ref, ceiling=args.ceiling
        )
    except ValueError as error:
        raise ConfigError(f"Bad shaping: {error}.") from error
    try:  # the core checks every range; its messages start with the setting's name
        return GeneratorTrainConfig(
            eps=args.eps, steps=args.steps, batch=args.batch, size=args.size, lr=args.lr,
            secrecy=args.secrecy, visibility=args.visibility, seed=args.seed, shaping=shaping,
            split_seed=args.split_seed, ssim=args.ssim, editor_scale=tuple(args.editor_scale),
            editor_filter=args.editor_filter, lanczos_share=args.lanczos_share, jpeg=args.jpeg,
            jpeg_quality=args.jpeg_quality, jpeg_first=args.jpeg_first,
            time_limit=args.time_limit * 60,
            network=GeneratorConfig(**{
                name: value for name, value in (("width", args.width), ("blocks", args.blocks))
                if value is not None
            }),
        )  # fmt: skip
    except ConfigError as error:  # name the option, not the core's field
        name, _, rest = error.message.partition(" ")
        raise ConfigError(f"--{name.replace('_', '-')} {rest}") from error


def _report(args: argparse.Namespace, summary: dict[str, Any], steps: int, saved: Path) -> None:
    if args.json:
        print_json({"path": str(saved), **summary})
        return
    if summary["stopped_early"]:
        kept = "" if saved == args.out else f" ({args.out} was already there: left as it was)"
        print(
            f"Stopped (Ctrl+C or a stop signal) after {summary['steps_done']} of {steps} steps: "
            f"saved what was learnt so far{kept}. Its learning rate had not come down yet; "
            "--init with it continues the training."
        )
    elif summary["time_limit_reached"]:
        print(
            f"The --time-limit ended the training after {summary['steps_done']} of {steps} "
            "steps (its learning rate came down over that time, as over the steps without one)."
        )
    print(f"Saved {saved} ({count_of(summary['train_photos'], 'training photo')}).")
    for photo in summary["skipped_photos"]:  # unreadable: trained without them
        print(f"Skipped {photo['name']}: {photo['reason']}")
    for photo in summary["skipped_held_out"]:  # unreadable: checked without them
        print(f"Held-out check skipped {photo['name']}: {photo['reason']}")
    _report_coarseness(summary["held_out_check"])


def _report_coarseness(check: dict[str, Any] | None) -> None:
    """Say how coarse the new file's deltas are on held-out photos, and when to measure it."""
    from spdesk.core.train_generator import COARSE_SHARE

    if check is None:
        print("No held-out photo could be read: the file's grain was not checked.")
        return
    share, signs = check["low_frequency_share"], check["random_signs"]
    print(
        f"Held-out check ({count_of(check['photos'], 'photo')}): low-frequency share "
        f"{share:.4f}, "
        f"random signs under the same shaping {signs:.4f}."
    )
    if share > COARSE_SHARE:
        print(
            f"Warning: above {COARSE_SHARE}, this file's protection is coarse and likely plainly "
            "visible (the same recipe can end so with another seed). Measure it before use: "
            "spdesk eval --photos FOLDER --encoder taesd --generator FILE."
        )
