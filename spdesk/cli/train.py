"""``spdesk train``: train a universal perturbation on a folder of photos."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spdesk.cli.common import EXIT_OK, ProgressPrinter, cancel_on_sigint, print_json
from spdesk.core.train_advice import DEFAULT_OBJECTIVE, DEFAULT_ROBUSTNESS, short_run_warning

if TYPE_CHECKING:  # spdesk.core.train imports torch: not at --help
    from spdesk.core.train import TrainConfig, TrainResult


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="train a universal perturbation on a folder of photos",
        description=(
            "Train a universal perturbation that disturbs an image encoder on every photo. "
            "Held-out photos report its effect next to random noise of the same strength."
        ),
    )
    parser.add_argument("photos", metavar="PHOTOS_DIR", type=Path, help="folder of photos")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="perturbation file to write")
    where.add_argument(
        "--library",
        metavar="NAME",
        help="save into the app's library under NAME, as the app's Train dialog does (a "
        "cancelled run resumes when started again with the same settings)",
    )
    _objective_options(parser.add_argument_group("what it is trained against"))
    _optimisation_options(parser.add_argument_group("optimisation"))
    _run_options(parser.add_argument_group("the run"))
    _saving_options(parser.add_argument_group("the saved perturbation"))
    parser.set_defaults(func=run)


def _objective_options(group: Any) -> None:
    group.add_argument(
        "--encoder",
        required=True,
        help="'sd15', 'taesd', a diffusers folder, a tiny-autoencoder weights file, or several, "
        "comma-separated (ensemble)",
    )
    group.add_argument(
        "--objective",
        default=DEFAULT_OBJECTIVE,
        help=f"latent, encoder, pca+, pca- (the encoder alone), sds+, sds-, advdm (these need "
        f"Stable Diffusion 1.5's UNet); comma-separated; default {DEFAULT_OBJECTIVE}: it "
        "measured strongest, see spdesk.core.train_advice",
    )
    group.add_argument(
        "--target", default="grey",
        help="where the encoder objective pushes each photo's latent: grey (default), black, "
        "white or an image file",
    )  # fmt: skip
    group.add_argument("--eps", type=float, default=8.0, help="budget in 8-bit steps (8)")
    group.add_argument(
        "--robust", default=",".join(DEFAULT_ROBUSTNESS),
        help="edits to stay strong through, comma-separated: jpeg,resize,crop,blur (default: "
        "none; trained against jpeg,resize a pattern kept more of its effect after JPEG but came "
        "out much easier to see, see spdesk.core.train_advice)",
    )  # fmt: skip


def _optimisation_options(group: Any) -> None:
    group.add_argument("--steps", type=int, default=500, help="optimisation steps (500)")
    group.add_argument("--batch", type=int, default=8, help="photos per step (8)")
    group.add_argument(
        "--size", type=int, default=None,
        help="crop side in pixels, a multiple of 8; photos are resized to it first "
        "(512; 128 on a CPU, where a 512 px step costs about twenty times as much; with "
        "--resume, the checkpoint's)",
    )  # fmt: skip
    group.add_argument(
        "--optimizer", choices=("pgd", "adam"), default="pgd",
        help="pgd: signed-gradient steps (default); adam: Adam, then back into the budget",
    )  # fmt: skip
    group.add_argument(
        "--step-size", type=float, default=None,
        help="first step in 8-bit steps (default: eps/4 for pgd, eps/8 for adam)",
    )  # fmt: skip
    group.add_argument(
        "--schedule", choices=("cosine", "constant"), default="cosine",
        help="cosine: the step decays to a tenth of the first (default); constant: it stays",
    )  # fmt: skip
    group.add_argument(
        "--start", choices=("auto", "zero", "random", "sign"), default="auto",
        help="the first perturbation; auto: random when the objective needs it, else zero",
    )  # fmt: skip
    group.add_argument("--seed", type=int, default=0, help="seeds the start and batches (0)")
    group.add_argument(
        "--split-seed", type=int, default=0,
        help="seeds which photos train and which are held out; keep it when --seed changes (0)",
    )  # fmt: skip


def _run_options(group: Any) -> None:
    group.add_argument(
        "--max-photos", type=int, default=None,
        help="use at most this many of the photos, chosen by --split-seed (default: all)",
    )  # fmt: skip
    group.add_argument(
        "--val-every", type=int, default=50,
        help="report the effect on held-out photos every this many steps (50; 0: at the end)",
    )  # fmt: skip
    group.add_argument(
        "--checkpoint", type=Path, default=None,
        help="checkpoint file, written every 50 steps, at the end and when stopped (a new file, "
        "or a checkpoint of an earlier run, which it replaces)",
    )  # fmt: skip
    group.add_argument(
        "--resume", action="store_true",
        help="continue from --checkpoint (it must exist, with the same settings and photos)",
    )  # fmt: skip
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    group.add_argument("--micro-batch", type=int, default=None, help="less memory per pass")
    group.add_argument(
        "--checkpointing", action="store_true",
        help="recompute SD 1.5 VAE activations: same result, far less GPU memory, more time",
    )  # fmt: skip
    group.add_argument("--json", action="store_true", help="print one JSON summary")


def _saving_options(group: Any) -> None:
    group.add_argument("--name", default="", help="with --out: the name shown in the app's library")
    group.add_argument("--description", default="", help="a description shown in the app's library")
    group.add_argument(
        "--force", action="store_true",
        help="replace --out if it exists (without it, an existing file is never replaced: "
        "neither a pattern trained before nor a file of another kind)",
    )  # fmt: skip


def _config(args: argparse.Namespace) -> Any:
    from spdesk.core.train import TrainConfig

    return TrainConfig(
        # As typed: the saved file records it (a shared file must not carry a home folder's
        # path); resuming compares the resolved folder (TrainConfig.resumable_settings).
        photos=str(args.photos),
        encoder=args.encoder,
        objective=args.objective,
        target=args.target,
        eps=args.eps,
        steps=args.steps,
        batch=args.batch,
        micro_batch=args.micro_batch,
        checkpointing=args.checkpointing,
        size=args.size
        if args.size is not None
        else _resumed_size(args) or _default_size(args.device),
        optimizer=args.optimizer,
        step_size=args.step_size,
        schedule=args.schedule,
        start=args.start,
        robust=tuple(r.strip() for r in args.robust.split(",") if r.strip()),
        max_photos=args.max_photos,
        val_every=args.val_every,
        seed=args.seed,
        split_seed=args.split_seed,
        device=args.device,
        name=args.name,
        description=args.description,
    )


def _resumed_size(args: argparse.Namespace) -> int | None:
    """The checkpoint's crop side when resuming without ``--size`` (the CPU default changed
    from 512 to 128 px; a checkpoint keeps the size it was started with)."""
    from spdesk.core.train import checkpoint_crop_size

    if not (args.resume and args.checkpoint is not None and args.checkpoint.is_file()):
        return None
    size = checkpoint_crop_size(args.checkpoint)
    if size is not None:
        print(f"Note: resuming at the checkpoint's {size} px crops.", file=sys.stderr)
    return size


def _default_size(device: str) -> int:
    """The crop side for ``--device`` when ``--size`` is not given (saying so on a CPU)."""
    from spdesk.core.device import resolve_device
    from spdesk.core.train_advice import ACCELERATOR_CROP_SIZE, default_crop_size

    size = default_crop_size(resolve_device(device).type)
    if size != ACCELERATOR_CROP_SIZE:
        print(
            f"Note: training on the CPU at {size} px crops, the bundled pattern's recipe (a "
            f"{ACCELERATOR_CROP_SIZE} px step costs about twenty times as much); "
            f"--size {ACCELERATOR_CROP_SIZE} trains at the editors' size.",
            file=sys.stderr,
        )
    return size


def _require_named_encoders(spec: str) -> None:
    """A named encoder ("taesd", "sd15") that is not installed is said first, alone: it came
    after the notes on crop size and a short run, about a run that could not start."""
    from spdesk.core.models.store import ENCODER_FEATURES, ModelStore

    store = ModelStore()
    for name in (part.strip() for part in spec.split(",")):
        feature = ENCODER_FEATURES.get(name)
        if feature is not None and store.find(feature) is None:
            store.require(feature)  # raises what loading the encoder would, with its fix


def run(args: argparse.Namespace) -> int:
    from spdesk.core.device import resolve_device
    from spdesk.core.errors import Cancelled, ConfigError
    from spdesk.core.events import Event
    from spdesk.core.events.training import (
        CheckingPattern,
        CheckpointFailed,
        CheckStep,
        TrainStarted,
        TrainStep,
        ValidationReport,
    )
    from spdesk.core.files import shown
    from spdesk.core.jobs.events import count_of
    from spdesk.core.perturbation import check_destination
    from spdesk.core.train import CancelledWhileChecking, train_universal
    from spdesk.core.trained_pattern import MISSING_TEXT, UNCHECKED_TEXT, visibility_available
    from spdesk.core.usecases import StartingAfresh, train_into_library

    if args.library is not None:
        _check_library_name(args.library)
        if args.name:
            raise ConfigError(
                f"--library {args.library!r} is the name shown in the app's library; drop "
                "--name (it names a pattern saved with --out)."
            )
        if args.checkpoint or args.resume:
            raise ConfigError(
                "--library keeps its own checkpoint and resumes by itself; "
                "drop --checkpoint and --resume (or use --out)."
            )
    elif args.resume and args.checkpoint is None:
        raise ConfigError(
            "--resume continues from a checkpoint: name it with --checkpoint FILE.",
            hint="A run started with --checkpoint FILE writes it every 50 steps, at its end and "
            "when stopped.",
        )
    elif args.resume and not args.checkpoint.exists():
        raise ConfigError(
            f"--resume: there is no checkpoint {shown(args.checkpoint)} to continue from.",
            hint="Check its name; without --resume a new run starts and writes it.",
        )
    _require_named_encoders(args.encoder)
    if args.out is not None:  # refused alone, not after the notes on a run that cannot start
        check_destination(args.out, force=args.force)
    config = _config(args)
    resolve_device(config.device)  # a device that is not here is said before the notes below
    printer = ProgressPrinter(quiet=args.json)
    short = short_run_warning(config.steps)
    if short:
        print(f"Warning: {short}", file=sys.stderr)

    # What the folder held that was not trained on: in the JSON summary as in the text.
    listed: dict[str, list[dict[str, str]]] = {"skipped_photos": [], "left_out": []}

    def on_event(event: Event) -> None:
        if isinstance(event, TrainStep):
            label = f"step {event.step}/{event.steps} loss {event.loss:.4g}"
            printer.update(label, event.step, event.steps, event.eta_s)
        elif isinstance(event, StartingAfresh):
            printer.line(f"Starting afresh: {event.reason}.")
        elif isinstance(event, TrainStarted):
            resumed = f", resuming at step {event.resumed_from}" if event.resumed_from else ""
            printer.line(
                f"Training on {count_of(event.train_photos, 'photo')} "
                f"({event.val_photos} held out) with {event.encoder}{resumed}"
                f"{_listed_below(event)}."
            )
            for photo in event.skipped:
                printer.line(f"Skipped {shown(photo.path)}: {photo.reason}")
            for item in event.left_out:  # not photos: as spdesk protect lists them
                printer.line(f"Left out {shown(item.path)}: {shown(item.reason)}")
            listed["skipped_photos"] = [
                {"name": p.path.name, "path": str(p.path), "reason": p.reason}
                for p in event.skipped
            ]
            listed["left_out"] = [{"path": str(i.path), "reason": i.reason} for i in event.left_out]
        elif isinstance(event, CheckingPattern):
            guess = event.estimate_s  # by the encoder's network: a TAESD file's path too
            about = f" (about {_seconds_text(guess)})" if guess else ""
            printer.line(
                f"Checking it on {count_of(event.photos, 'held-out photo')} as spdesk protect "
                f"lays it, at a {event.editor} px editor{about}."
            )
        elif isinstance(event, CheckStep):
            label = f"checking its {event.stage}: photo {event.done}/{event.total}"
            printer.update(label, event.done, event.total, event.eta_s)
        elif isinstance(event, ValidationReport):
            printer.line(
                f"step {event.step}: held-out latent distortion {event.distortion:.3f}, "
                f"random signs {event.sign_distortion:.3f} ({event.gain_over_sign:.2f}x)"
            )
        elif isinstance(event, CheckpointFailed):
            printer.line(
                f"Warning: the checkpoint of step {event.step} was not written ({event.reason}); "
                "training goes on."
            )

    try:
        if args.library is not None:
            result = train_into_library(config, on_event=on_event, cancel=cancel_on_sigint())
        else:
            result = train_universal(
                config,
                out=args.out,
                checkpoint=args.checkpoint,
                resume=args.resume,
                on_event=on_event,
                cancel=cancel_on_sigint(),
                force=args.force,
                check=True,
            )
    except CancelledWhileChecking as cancelled:
        saved = shown(cancelled.path)
        raise Cancelled(
            f"Cancelled during the final check, once every step had run: the trained pattern is "
            f"saved to {saved} without the check's figures (spdesk eval --perturbation {saved} "
            "--photos FOLDER measures them)."
        ) from cancelled
    except Cancelled as cancelled:
        raise Cancelled(_cancelled_text(args)) from cancelled
    printer.close()
    if args.library is not None:
        result.path, name = _saved_to_library(result, config, args.library)
        if name != args.library:
            print(
                f"Note: “{args.library}” was added to your library while this run trained (by "
                f"another run or the app); this run is saved as “{name}”.",
                file=sys.stderr,
            )
    summary = {
        "path": str(result.path),
        "seconds_per_step": result.seconds_per_step,
        "validation": [
            dataclasses.asdict(r) | {"gain": r.gain_over_sign} for r in result.validation
        ],
        "metadata": result.metadata,
        "product_gain": dataclasses.asdict(result.product_gain) if result.product_gain else None,
        "visibility": dataclasses.asdict(result.visibility) if result.visibility else None,
        **listed,
    }
    if not visibility_available():
        print(f"Note: {MISSING_TEXT}.", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        if result.product_gain is not None:
            print(result.product_gain.text(), file=sys.stdout)
        else:  # every held-out photo too small to measure
            print(f"Note: {UNCHECKED_TEXT}.", file=sys.stderr)
        if result.visibility is not None:
            print(result.visibility.text(), file=sys.stdout)
        print(f"Saved {result.path}", file=sys.stdout)
    return EXIT_OK


def _listed_below(event: Any) -> str:
    """`` (1 unreadable photo skipped, 2 other files left out; listed below)``: the start line
    counts the lines that follow it, as spdesk protect's does; empty when none follow."""
    from spdesk.core.jobs.events import count_of, left_out_phrase

    extra = []
    if event.skipped:
        extra.append(f"{count_of(len(event.skipped), 'unreadable photo')} skipped")
    if event.left_out:
        folders = sum(item.path.is_dir() and not item.path.is_symlink() for item in event.left_out)
        extra.append(f"{left_out_phrase(len(event.left_out) - folders, folders)} left out")
    return f" ({', '.join(extra)}; listed below)" if extra else ""


def _seconds_text(seconds: float) -> str:
    """``16 s``, ``2 min``: an estimate, in words."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _saved_to_library(result: TrainResult, config: TrainConfig, name: str) -> tuple[Path, str]:
    """``result`` saved to the library; a save that fails says whether the run is kept."""
    from spdesk.core.errors import OutputError, with_outcome
    from spdesk.core.train import checkpoint_step
    from spdesk.core.usecases import library_checkpoint, save_under_free_name

    try:
        return save_under_free_name(result, name)
    except OutputError as error:
        kept = checkpoint_step(library_checkpoint(config)) == config.steps
        then = (
            "The training is kept: once there is space, the same command saves it without "
            "training again."
            if kept
            else "Its checkpoint could not be written either: the training is lost."
        )
        raise with_outcome(error, then) from error


def _cancelled_text(args: argparse.Namespace) -> str:
    """What a stopped run kept and how to go on, in one line."""
    from spdesk.core.files import shown

    if args.library is not None:
        return (
            "Cancelled; nothing was saved to the library: the same command resumes where it "
            "stopped."
        )
    if args.checkpoint is not None:
        return f"Cancelled; {shown(args.checkpoint)} keeps the steps done: add --resume to go on."
    return "Cancelled; nothing was kept (--checkpoint FILE makes a run resumable)."


def _check_library_name(name: str) -> None:
    """Refuse a taken or empty library name before training, not after it."""
    from spdesk.core.errors import ConfigError, OutputError
    from spdesk.core.files import check_writable
    from spdesk.core.perturbation import library_name_at, library_path_for

    if not name.strip():
        raise ConfigError("--library needs a name.")
    there = library_name_at(name)
    if there is not None:
        taken = f"“{name}” is" if there == name else f"“{there}”, in the same file as “{name}”, is"
        raise ConfigError(
            f"{taken} already in your library ({library_path_for(name)}).",
            hint="Choose another name, or delete that perturbation first.",
        )
    try:  # before the training, not after it (the library folder may be read-only)
        check_writable(library_path_for(name))
    except OutputError as error:
        error.hint = (
            "Make your perturbation library folder writable, or save the result elsewhere "
            "with --out FILE instead of --library."
        )
        raise
