"""``spdesk protect``: protect photos and folders into an output folder.

Runs :class:`spdesk.core.jobs.ProtectJob`, the same call as the app's Protect button, or with
``--engine ray`` its Ray twin (:mod:`spdesk.core.distributed.ray_engine`). Exit status:
0 when every photo was protected or skipped, 1 when some failed (or the disk filled up), 2 when
the job could not run at all, 130 when cancelled (Ctrl+C; run it again to finish the rest).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spdesk.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    ProgressPrinter,
    add_encoder_option,
    cancel_on_sigint,
    encoder_needed,
    fine_tune_jpeg,
    is_terminal,
    perturbation_reference,
    print_json,
)
from spdesk.core.events import EtaClock
from spdesk.core.export import COLLISIONS, DEFAULT_COLLISION, DEFAULT_STRIP, STRIP_CHOICES
from spdesk.core.files import shown
from spdesk.core.jobs.settings import (
    DEFAULT_FINETUNE_JPEG,
    DEFAULT_FINETUNE_OBJECTIVE,
    DEFAULT_FINETUNE_STEPS,
)
from spdesk.core.keys import key_made_here, key_made_text

DEFAULT_STRENGTH = 8.0  # the bundled files' own budget, shown in --help


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "protect",
        help="protect photos (files or folders) into an output folder",
        description=(
            "Add a perturbation to photos that pushes Stable Diffusion edits of them off course: "
            "by default each photo gets its own, shaped to hide in its texture (strength 8 = at "
            "most 8/255 per colour value). Originals are never modified: protected copies are "
            "written to --out as NAME.protected.EXT, mirroring the input folders. A re-run "
            "skips finished photos."
        ),
        epilog="Names starting with '-' can follow '--': spdesk protect --out OUT -- -photo.jpg",
    )
    # Strings: a URL (s3://bucket/photos) names an object store; anything else is a path.
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="+", help="photos or folders (or s3://, gs:// URLs)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (or a URL)")
    _protection_options(parser.add_argument_group("protection"))
    _fine_tune_options(parser.add_argument_group("fine-tuning (stronger; quick on a CUDA GPU)"))
    _output_options(parser.add_argument_group("protected copies"))
    _input_options(parser.add_argument_group("what is read"))
    _job_options(parser.add_argument_group("the job"))
    _ray_options(parser.add_argument_group("a Ray cluster"))
    parser.set_defaults(func=run)


def _protection_options(group: Any) -> None:
    group.add_argument(
        "--mode", choices=("photo", "universal"), default=None,
        help="photo: each photo its own perturbation (default; with no protection option given, "
        f"on a CUDA GPU with an encoder installed, also fine-tuned {DEFAULT_FINETUNE_STEPS} steps: "
        "--mode photo keeps one pass); universal: one pattern for all (instant; the default when "
        "--perturbation is given)",
    )  # fmt: skip
    group.add_argument(
        "--strength", type=float, default=None, metavar="EPS",
        help=f"at most EPS/255 change per colour value: 4 low, {DEFAULT_STRENGTH:g} medium "
        "(default; with --perturbation or --generator, that file's own), 16 high",
    )  # fmt: skip
    group.add_argument(
        "--perturbation",
        type=perturbation_reference,
        default=None,
        metavar="FILE|NAME",
        help="universal pattern file, or the name of one in your library (spdesk train "
        "--library NAME; default: the bundled one)",
    )
    group.add_argument(
        "--generator", type=Path, default=None, metavar="FILE",
        help="protection generator for --mode photo (default: the bundled one)",
    )  # fmt: skip
    group.add_argument(
        "--working-size", type=int, default=512, metavar="PX", help="editor's short side (512)"
    )
    group.add_argument(
        "--randomize", action="store_true",
        help="universal mode: vary the pattern's offset and flips per photo",
    )  # fmt: skip
    group.add_argument("--seed", type=int, default=0, help="seed of --randomize (0)")
    group.add_argument(
        "--device", default="auto",
        help="where photo mode's network and fine-tuning run: auto (default: a CUDA GPU if there "
        "is one), cpu, cuda, mps",
    )  # fmt: skip


def _fine_tune_options(group: Any) -> None:
    group.add_argument(
        "--fine-tune", type=int, default=None, metavar="STEPS",
        help="optimise each photo's perturbation against --encoder for STEPS steps, inside the "
        "same budget (photo mode; with --mode universal, the universal pattern)",
    )  # fmt: skip
    add_encoder_option(group)
    group.add_argument(
        "--objective", default=DEFAULT_FINETUNE_OBJECTIVE,
        help=f"objective of --mode universal --fine-tune ({DEFAULT_FINETUNE_OBJECTIVE}: away from "
        "the photo's own latent; encoder: PhotoGuard's, towards a grey photo's)",
    )  # fmt: skip
    group.add_argument(
        "--fine-tune-jpeg", default=None, metavar="Q",
        help=f"photo fine-tuning also defends against a JPEG re-save of quality Q "
        f"({DEFAULT_FINETUNE_JPEG}; off: the photo as is only, twice as fast)",
    )  # fmt: skip
    group.add_argument(
        "--fine-tune-batch", type=int, default=None, metavar="N",
        help="photos of one size fine-tuned together (default: 8 on a CUDA GPU, else 1)",
    )  # fmt: skip


def _output_options(group: Any) -> None:
    group.add_argument(
        "--format", choices=("png", "jpeg", "webp", "tiff"), default=None,
        help="write every output in this format (default: each photo's own; GIF becomes PNG, "
        "HEIC and AVIF JPEG, or PNG when they hold transparency)",
    )  # fmt: skip
    group.add_argument(
        "--quality", type=int, default=None, metavar="Q", help="JPEG/WebP quality (95)"
    )
    group.add_argument(
        "--collision", choices=COLLISIONS, default=DEFAULT_COLLISION,
        help="when an output name is taken: unique adds -2, -3... (default: nothing is ever "
        "replaced), skip leaves the photo out, overwrite replaces a copy spdesk wrote (never a "
        "file of yours); a re-run with the same settings skips finished photos either way",
    )  # fmt: skip
    group.add_argument(
        "--strip-metadata", choices=STRIP_CHOICES, default=DEFAULT_STRIP,
        help="gps (default): remove the location (GPS), keep the rest of the metadata; none: "
        "keep the location too; all: remove EXIF, XMP, IPTC, PNG text and comments",
    )  # fmt: skip
    group.add_argument("--suffix", default=".protected", help="added to output names (.protected)")
    group.add_argument("--redo", action="store_true", help="protect finished photos again")


def _input_options(group: Any) -> None:
    group.add_argument(
        "--follow-symlinks", action="store_true",
        help="follow symbolic links found inside the input folders (default: they are skipped "
        "and listed, so a walk never leaves the folders given)",
    )  # fmt: skip
    group.add_argument(
        "--allow-output-in-input", action="store_true", help="allow --out inside an input folder"
    )
    group.add_argument(
        "--max-megapixels", type=float, default=None, metavar="MP", help="refuse larger (179)"
    )


def _job_options(group: Any) -> None:
    group.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="photos at once (default: CPU cores + 1, at most 4; 1 = one by one); with --engine "
        "ray, photos in flight in each worker (default 2)",
    )  # fmt: skip
    group.add_argument(
        "--memory-budget", default=None, metavar="SIZE",
        help="memory the photos in flight may hold at once, e.g. 4G (default: half the memory "
        "available; a larger photo runs alone)",
    )  # fmt: skip
    group.add_argument("--json", action="store_true", help="print one JSON summary")


def _ray_options(group: Any) -> None:
    group.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="where to protect: this machine (local) or a Ray cluster (needs spdesk's [ray] extra: "
        'pip install ".[ray]" in spdesk\'s folder; docs/ray.md)',
    )  # fmt: skip
    group.add_argument(
        "--address", default=None, metavar="ADDR",
        help="with --engine ray: auto (this machine's cluster) or ray://HOST:10001 "
        "(default: a Ray instance started for the job)",
    )  # fmt: skip
    group.add_argument(
        "--num-cpus", type=int, default=None, metavar="N",
        help="with --engine ray: CPU workers (default: every CPU of the cluster)",
    )  # fmt: skip
    group.add_argument(
        "--num-gpus", type=int, default=None, metavar="N",
        help="with --engine ray: GPU workers for photo mode's generator and --fine-tune "
        "(default: every GPU of the cluster; 0: CPU workers)",
    )  # fmt: skip


def _mode(args: argparse.Namespace) -> str:
    """The job's mode (:func:`~spdesk.core.jobs.settings.job_mode`, as the app decides it)."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.jobs.settings import job_mode

    mode = job_mode(
        args.mode, fine_tune=args.fine_tune is not None, own_pattern=bool(args.perturbation)
    )
    if mode in ("universal", "finetune") and args.generator:  # also when --perturbation chose it
        raise ConfigError("--generator is only used with --mode photo.")
    if mode == "photo-finetune" and args.objective != DEFAULT_FINETUNE_OBJECTIVE:
        raise ConfigError(
            "--objective applies to fine-tuning the universal pattern (--mode universal); "
            "photo fine-tuning pushes the encoder's latent off course."
        )
    if mode == "universal" and args.objective != DEFAULT_FINETUNE_OBJECTIVE:
        raise ConfigError("--objective applies to fine-tuning (--mode universal --fine-tune N).")
    if args.fine_tune_jpeg is not None and mode != "photo-finetune":
        raise ConfigError("--fine-tune-jpeg applies to photo fine-tuning (--fine-tune STEPS).")
    if mode in ("photo", "photo-finetune"):  # options of the universal pattern, else ignored
        unused = [
            option
            for option, given in (
                ("--perturbation", bool(args.perturbation)),
                ("--randomize", args.randomize),
                ("--objective", args.objective != DEFAULT_FINETUNE_OBJECTIVE),
            )
            if given
        ]
        if unused:
            verb = "applies" if len(unused) == 1 else "apply"
            raise ConfigError(
                f"{', '.join(unused)} only {verb} to the universal pattern (--mode universal); "
                "photo mode draws each photo's own perturbation."
            )
    if args.seed and not args.randomize:
        raise ConfigError("--seed is only used with --randomize.")
    return mode


def settings_from_args(args: argparse.Namespace) -> Any:
    """The job settings for the command line (validated by ProtectSettings)."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.jobs import ProtectSettings

    if args.fine_tune is not None and not args.encoder:
        raise encoder_needed()
    if args.encoder and args.fine_tune is None:
        raise ConfigError("--encoder is only used with --fine-tune STEPS.")
    if args.fine_tune_batch is not None and args.fine_tune is None:
        raise ConfigError("--fine-tune-batch is only used with --fine-tune STEPS.")
    _apply_recommendation(args)
    extra: dict[str, Any] = {}
    if args.workers is not None:
        extra["workers"] = args.workers
    if args.max_megapixels is not None:
        if not math.isfinite(args.max_megapixels):  # 0 and below: the settings say why
            raise ConfigError(
                f"--max-megapixels must be a number of megapixels, got {args.max_megapixels}."
            )
        extra["max_pixels"] = int(args.max_megapixels * 1_000_000)
    if args.memory_budget not in (None, "auto"):
        from spdesk.core.jobs.memory import parse_size

        extra["memory_budget"] = parse_size(args.memory_budget)
    return ProtectSettings(
        perturbation=args.perturbation,
        strength=args.strength,
        mode=_mode(args),
        generator=args.generator,
        finetune_steps=args.fine_tune if args.fine_tune is not None else DEFAULT_FINETUNE_STEPS,
        finetune_batch=args.fine_tune_batch,
        finetune_jpeg=fine_tune_jpeg(args.fine_tune_jpeg),
        encoder=args.encoder or "sd15",
        objective=args.objective,
        device=args.device,
        suffix=args.suffix,
        collision=args.collision,
        format=args.format,
        quality=_quality(args),
        working_size=args.working_size,
        strip_metadata=args.strip_metadata,
        randomize=args.randomize,
        seed=args.seed,
        follow_symlinks=args.follow_symlinks,
        allow_output_in_input=args.allow_output_in_input,
        redo=args.redo,
        **extra,
    )


def _quality(args: argparse.Namespace) -> int:
    """--quality, refused where every output is lossless (it would be ignored)."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.export import DEFAULT_QUALITY

    if args.quality is not None and args.format in ("png", "tiff"):
        raise ConfigError(
            f"--quality applies to JPEG and WebP outputs, not --format {args.format}."
        )
    return DEFAULT_QUALITY if args.quality is None else args.quality


def _apply_recommendation(args: argparse.Namespace) -> None:
    """With no protection chosen (no --mode, --fine-tune, --perturbation or --generator), use
    what this machine does best (:func:`~spdesk.core.jobs.settings.recommended_protection`):
    photo fine-tuning on a CUDA GPU with an encoder installed, photo mode elsewhere. The local
    engine only: a Ray driver's devices say nothing of its workers'."""
    chosen = (args.mode, args.fine_tune, args.perturbation, args.generator)
    if args.engine != "local" or any(value is not None for value in chosen):
        return
    from spdesk.core.device import resolve_device
    from spdesk.core.jobs.settings import recommended_protection
    from spdesk.core.models.store import installed_encoders

    kind = resolve_device(args.device).type
    if kind != "cuda":  # the model store is read only where it can change the choice
        return
    advice = recommended_protection(kind, installed_encoders())
    if advice.mode == "photo-finetune":
        args.fine_tune, args.encoder = advice.steps, advice.encoder
        if not args.json:
            print(f"Note: {advice.reason} (--mode photo: one pass).", file=sys.stderr)


def job_from_args(args: argparse.Namespace, settings: Any) -> Any:
    """The job for ``--engine``: a ProtectJob here, or a RayProtectJob on a Ray cluster."""
    from spdesk.core.errors import ConfigError
    from spdesk.core.jobs import ProtectJob

    # An empty string would mean the current folder: an unset variable (--out "$OUT") must not.
    if not str(args.out).strip():
        raise ConfigError("--out is empty.", hint="Name the folder for the protected copies.")
    if any(not str(path).strip() for path in args.inputs):
        raise ConfigError("An INPUT is empty.", hint="Name each photo or folder to protect.")
    if args.engine == "local":
        ray_only = ("address", "num_cpus", "num_gpus")
        given = [
            "--" + name.replace("_", "-") for name in ray_only if getattr(args, name) is not None
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ConfigError(f"{', '.join(given)} only {verb} with --engine ray.")
        return ProtectJob(args.inputs, args.out, settings)
    from spdesk.core.distributed.ray_engine import RayOptions, RayProtectJob

    in_flight = {} if args.workers is None else {"threads": args.workers}  # per worker
    options = RayOptions(
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        **in_flight,
        # Ray's bars redraw with carriage returns: on a pipe or in a log each redraw stays
        # (the last one twice on one line), where the photos' own lines already say it all.
        progress=not args.json and is_terminal(sys.stderr),
    )
    return RayProtectJob(args.inputs, args.out, settings, options)


QUIET_LOG_S = 30.0  # a log (not a terminal) is told a slow photo's stage after this silence
WALK_NOTICE_S = 2.0  # a walk this long is said; a shorter one passes without a line


class _Printer:
    """Turns job events into a progress bar (terminal) or plain lines (pipes, logs).

    With ``bar`` off (the Ray engine, which shows Ray's own progress on a terminal), only the
    lines. Paths are shown as the job shows them (``job.store.shown``: an object store's URLs).
    ``now`` is the ETA's clock.
    """

    def __init__(
        self,
        quiet: bool,
        bar: bool = True,
        job: Any = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.show_bar = bar
        self.source = job.store.shown if job is not None else str
        self.output = job.output_store.shown if job is not None else str
        self.progress = ProgressPrinter(quiet=quiet)
        self.now = now
        self.clock = EtaClock(0, now)
        self.finished = 0
        self.total = 0
        self._said_at = now()  # when the last line was written (pipes and logs)
        self._walking = False
        self._walk_text = ""
        self._walk_lock = threading.Lock()
        self._walk_notice: threading.Timer | None = None

    def look_for_photos(self, inputs: Sequence[Path | str]) -> None:
        """Say that the inputs are being walked if the walk lasts ``WALK_NOTICE_S``: the walk
        of a large or network folder left the terminal silent for seconds to minutes. The
        clock starts when the job says it walks them (not while it loads its pattern)."""
        named = [self.source(path) for path in inputs[:2]]
        more = f" and {len(inputs) - 2} more" if len(inputs) > 2 else ""
        self._walk_text = f"Looking for photos in {', '.join(named)}{more}… (Ctrl+C stops)"

    def _start_walk_clock(self) -> None:
        if not self._walk_text:
            return
        self._walking = True
        self._walk_notice = threading.Timer(WALK_NOTICE_S, self._say_walking)
        self._walk_notice.daemon = True
        self._walk_notice.start()

    def _say_walking(self) -> None:
        with self._walk_lock:  # never after the walk's end
            if not self._walking:
                return
            # A stream closed under this thread: not a second traceback, from the thread (a
            # broken pipe is already taken by the printer).
            with contextlib.suppress(ValueError):
                self.progress.line(self._walk_text)

    def _walked(self) -> None:
        with self._walk_lock:
            self._walking = False
        if self._walk_notice is not None:
            self._walk_notice.cancel()

    def __call__(self, event: Any) -> None:
        from spdesk.core import jobs

        if isinstance(event, jobs.LookingForPhotos):
            self._start_walk_clock()
            return
        self._walked()
        if isinstance(event, jobs.JobStarted):
            self.total = event.total
            self.clock = EtaClock(event.total, self.now)
            self.progress.line(_started_line(event, self.output(event.output_root)))
            for warning in event.warnings:
                self.progress.line(f"Warning: {warning}")
        elif isinstance(event, jobs.FileProgress):
            self._bar(f"{shown(event.source.name)} ({event.stage})")  # a name may hold escape codes
        elif isinstance(event, jobs.FileDone):
            self.finished += 1
            psnr = jobs.UNCHANGED if event.unchanged else _psnr_text(event.psnr, event.output)
            notes = f"; {'; '.join(event.notes)}" if event.notes else ""
            if self.progress.tty:  # the bar shows progress; keep the screen for problems
                self._bar("")
            else:
                source, output = self.source(event.source), self.output(event.output)
                self._line(f"done     {source} -> {output} ({psnr}{notes})")
        elif isinstance(event, jobs.FileSkipped):
            if event.position:  # a photo of the total, done in no time (already protected)
                self.finished += 1
                self.clock.skip()
            # Excluded files are not photos the summary counts as skipped: say what it says.
            word = "left out" if event.kind is jobs.SkipReason.EXCLUDED else "skipped "
            self._line(f"{word} {self.source(event.source)}: {shown(event.reason)}")
        elif isinstance(event, jobs.FileFailed):
            self.finished += 1 if event.position else 0  # a missing input is not in the total
            hint = f" ({shown(event.hint)})" if event.hint else ""
            self._line(f"FAILED   {self.source(event.source)}: {shown(event.reason)}{hint}")

    def _line(self, text: str) -> None:
        self.progress.line(text)
        self._said_at = self.now()
        self._bar("")

    def _bar(self, label: str) -> None:
        # In a log, a photo's stage is said only once the log has been quiet a while: a
        # fine-tuned photo takes minutes on a CPU, and its log said nothing until it was done.
        quiet = self.now() - self._said_at >= QUIET_LOG_S
        if self.show_bar and self.total and (self.progress.tty or not label or quiet):
            text = f"{self.finished}/{self.total} {label}".rstrip()
            self.progress.update(text, self.finished, self.total, self.clock.eta(self.finished))
            if label and not self.progress.tty:
                self._said_at = self.now()

    def close(self) -> None:
        self._walked()
        self.progress.close()


def _started_line(event: Any, output_root: str) -> str:
    """``Protecting 6 photos into out (1 other file left out, listed below)``: the photos and
    the files listed below it add up to the lines that follow. Photos whose header already
    fails are not promised: ``Found 4 photos, 1 of them cannot be protected (reason below);
    protecting the other 3 into out``."""
    from spdesk.core.jobs.events import count_of, left_out_phrase

    line = f"{_photos_phrase(event.total, event.unreadable)} into {output_root}"
    extra = []
    if event.skipped_inputs:
        files = event.skipped_inputs - event.skipped_folders
        extra.append(f"{left_out_phrase(files, event.skipped_folders)} left out")
    if event.failed_inputs:
        extra.append(f"{count_of(event.failed_inputs, 'input')} not found or unreadable")
    return f"{line} ({', '.join(extra)}; listed below)" if extra else line


def _photos_phrase(total: int, unreadable: int) -> str:
    """What the start line promises: only the photos whose header was read (or not checked)."""
    from spdesk.core.jobs.events import count_of

    if not total:  # an empty folder, or only other files: the job writes nothing
        return "No photos to protect: nothing is written"
    if not unreadable:
        return f"Protecting {count_of(total, 'photo')}"
    found = f"Found {count_of(total, 'photo')}"
    why = "reason" if unreadable == 1 else "reasons"
    if unreadable == total:
        which = "it" if total == 1 else "any"
        return f"{found} and cannot protect {which} ({why} below): nothing to write"
    return (
        f"{found}, {unreadable} of them cannot be protected ({why} below); "
        f"protecting the other {total - unreadable}"
    )


def _collision_advice(report: Any) -> str | None:
    """How to protect photos skipped for a taken output name (the core says it in no
    front-end's words)."""
    from spdesk.core.jobs.events import SkipReason, count_of

    taken = [e for e in report.skipped if e.kind is SkipReason.OUTPUT_EXISTS]
    if not taken:
        return None
    if report.settings.get("collision") == "overwrite":  # the names hold files of others
        return (
            f"{count_of(len(taken), 'photo')} skipped because a file spdesk did not write has "
            "the output name (overwrite replaces only spdesk's own copies): run again with "
            "--collision unique to keep both."
        )
    return (
        f"{count_of(len(taken), 'photo')} skipped because the output name is taken: run again "
        "with --collision unique to keep both copies, or --collision overwrite to replace "
        "copies spdesk wrote."
    )


def run(args: argparse.Namespace) -> int:
    from spdesk.core.jobs import JobCancelled, JobReport

    settings = settings_from_args(args)
    job = job_from_args(args, settings)
    printer = _Printer(quiet=args.json, bar=args.engine == "local", job=job)
    printer.look_for_photos(list(job.inputs))
    try:
        report: JobReport = job.run(printer, cancel_on_sigint())
        status = EXIT_OK if report.ok else EXIT_FAILED
    except JobCancelled as cancelled:
        report, status = cancelled.report, EXIT_CANCELLED
    finally:
        printer.close()
    stats = getattr(job, "stats", None)  # the Ray engine's throughput
    key_made = key_made_here()
    if args.json:
        extra = ({"engine": stats.to_dict()} if stats else {}) | (
            {"protection_key_made": shown(key_made)} if key_made else {}
        )
        print_json(report.to_dict() | extra)
    else:
        advice = _collision_advice(report)
        summary = _summary(report) + (f"\n{stats.text()}" if stats else "")
        summary += f"\n{advice}" if advice else ""
        summary += f"\n{key_made_text(key_made)}" if key_made else ""
        print(summary, file=sys.stderr if status == EXIT_CANCELLED else sys.stdout)
    return status


FAILED_LISTED = 20  # failures named again in the summary (all were printed as they happened)


def _summary(report: Any) -> str:
    """The report's first lines, then the photos that failed, each with why (other per-file
    lines were printed as they happened, on stderr with the progress)."""
    lines = report.text(how_to_keep="--strip-metadata none keeps it").splitlines()
    keep = [line for line in lines if not line.startswith("  ")]
    head = [line for line in keep if line not in ("Failed:", "Skipped:")]
    return "\n".join(head + _failed_lines(report))


def _failed_lines(report: Any) -> list[str]:
    """``Failed (2):`` and a line per failure, ``  path: reason``."""
    if not report.failed:
        return []
    lines = [f"Failed ({len(report.failed)}):"]
    for event in report.failed[:FAILED_LISTED]:
        lines.append(f"  {report.source_shown(event.source)}: {shown(event.reason)}")
    more = len(report.failed) - FAILED_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more (each printed above with its reason)")
    return lines


_LOSSY_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".webp": "WebP"}


def _psnr_text(psnr: float | None, output: Path) -> str:
    """The copy's PSNR, measured on its pixels before encoding: a JPEG's (or WebP's, where it
    may be lossy) compression lowers the file's own a little more, so the line says so."""
    from spdesk.core.imageio import is_lossless_webp

    lossy = _LOSSY_SUFFIXES.get(output.suffix.lower())
    if lossy == "WebP" and is_lossless_webp(output):  # a lossless original's copy
        lossy = None
    return f"PSNR {psnr:.1f} dB" + (f" before {lossy} compression" if lossy else "")
