"""``spdesk preview``: the same AI edit on the original and on the protected photo, side by side."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spdesk.cli.common import (
    EXIT_OK,
    ProgressPrinter,
    add_encoder_option,
    cancel_on_sigint,
    perturbation_reference,
    print_json,
)
from spdesk.core.edits import EDIT_STEPS, EDIT_STRENGTH, GUIDANCE

if TYPE_CHECKING:
    from spdesk.core.usecases import FineTuning

STAGES = {"fine-tuning": "Fine-tuning the protection"}  # what the progress line says


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "preview",
        help="show what an AI editor does to the original and to the protected photo",
        description=(
            "Run the same Stable Diffusion 1.5 edit (img2img or inpainting, same seed and "
            "settings) on the original, on the protected photo and on the photo with random "
            "noise of the same strength (each colour value moved as far as the protection "
            "moves it, in a random direction), then write a comparison sheet and a JSON record. "
            "The edit is unfiltered (no safety checker): it is your own photo."
        ),
    )
    parser.add_argument("photo", metavar="PHOTO", type=Path, help="the photo to preview")
    parser.add_argument("--out", required=True, type=Path, help="folder for sheet and record")
    parser.add_argument(
        "--force", action="store_true", help="replace this photo's preview files already in --out"
    )
    parser.add_argument(
        "--perturbation",
        type=perturbation_reference,
        default=None,
        metavar="FILE|NAME",
        help="universal pattern file, or the name of one in your library (default: the bundled "
        "one)",
    )
    parser.add_argument(
        "--protection", choices=("photo", "universal"), default=None,
        help="how to protect: photo-specific (default) or the universal pattern (the default "
        "when --perturbation is given)",
    )  # fmt: skip
    parser.add_argument(
        "--strength", type=float, default=None, metavar="EPS",
        help="protection: at most EPS/255 change per colour value (default: 8, or the pattern "
        "file's own)",
    )  # fmt: skip
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default=None, help="free-text edit instruction")
    prompt.add_argument(
        "--preset",
        default=None,
        help="P1 watercolor, P2 sunset lighting, P3 snow, P4 empty (default P1)",
    )
    parser.add_argument(
        "--mode", choices=("img2img", "inpaint"), default="img2img",
        help="img2img: redraw the whole photo (default); inpaint: redraw the masked part",
    )  # fmt: skip
    parser.add_argument(
        "--mask", type=Path, default=None, help="inpainting mask (white = redo; --mode inpaint)"
    )
    parser.add_argument(
        "--mask-mode",
        choices=("keep-centre", "regenerate-centre"),
        default="keep-centre",
        help="default inpainting mask when --mask is not given (--mode inpaint)",
    )
    parser.add_argument(
        "--strength-edit", type=float, default=EDIT_STRENGTH,
        help=f"edit strength ({EDIT_STRENGTH})",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, default=EDIT_STEPS, help=f"denoising steps ({EDIT_STEPS})"
    )
    parser.add_argument(
        "--guidance", type=float, default=GUIDANCE, help=f"guidance scale ({GUIDANCE})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the edit (0)")
    parser.add_argument("--size", type=int, default=512, help="working view short side (512)")
    parser.add_argument("--model-dir", type=Path, default=None, help="diffusers SD 1.5 folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--offload", action="store_true", help="model CPU offload (small GPUs)")
    parser.add_argument("--json", action="store_true", help="print the JSON record")
    _fine_tune_options(
        parser.add_argument_group(
            "fine-tuning (preview what spdesk protect --fine-tune writes; --device runs it too)"
        )
    )
    parser.set_defaults(func=run)


def _fine_tune_options(group: Any) -> None:
    group.add_argument(
        "--fine-tune", type=int, default=None, metavar="STEPS",
        help="fine-tune the protection against --encoder for STEPS steps first, as spdesk "
        "protect --fine-tune STEPS does",
    )  # fmt: skip
    add_encoder_option(group)
    group.add_argument(
        "--fine-tune-jpeg", default=None, metavar="Q",
        help="photo fine-tuning also defends against a JPEG re-save of quality Q (75; off)",
    )  # fmt: skip
    group.add_argument(
        "--objective", default=None,
        help="objective of universal fine-tuning (latent, the default, or encoder)",
    )  # fmt: skip


def _mask(path: Path | None) -> Any:
    if path is None:
        return None
    from spdesk.core.preview import load_mask

    return load_mask(path)


def _new_folders(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first."""
    return [p for p in [folder, *folder.parents] if not p.exists()]


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; one holding anything stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def run(args: argparse.Namespace) -> int:
    from spdesk.core.errors import ImageTooLargeError

    created = _new_folders(args.out)
    try:
        return _run(args)
    except ImageTooLargeError as error:  # its hint names protect's option, which preview lacks
        mask = args.mask is not None and args.mask.name in error.message
        error.hint = (
            "Use a smaller mask: it is scaled to the photo's view anyway."
            if mask
            else "Preview a smaller copy: reduce the photo's size in an editor (the preview edits "
            f"a view of {args.size} pixels on the short side anyway)."
        )
        raise
    finally:
        _remove_empty(created)  # only empty ones: a failed preview leaves no folders behind


def _protection(args: argparse.Namespace) -> str:
    """The protection to preview, refusing a pattern file photo mode would not use (as
    ``spdesk protect --mode photo`` refuses it)."""
    from spdesk.core.errors import ConfigError

    if args.protection == "photo" and args.perturbation:
        raise ConfigError(
            "--perturbation only applies to the universal pattern (--protection universal); "
            "photo mode draws each photo's own perturbation."
        )
    return args.protection or ("universal" if args.perturbation else "photo")


def _fine_tuning(args: argparse.Namespace, protection: str) -> FineTuning | None:
    """The fine-tuning to preview (None: none), refusing what ``spdesk protect`` refuses."""
    from spdesk.cli.common import encoder_needed, fine_tune_jpeg
    from spdesk.core.errors import ConfigError
    from spdesk.core.jobs.settings import DEFAULT_FINETUNE_OBJECTIVE
    from spdesk.core.usecases import FineTuning

    if args.fine_tune is None:
        for option, given in (
            ("--encoder", args.encoder),
            ("--fine-tune-jpeg", args.fine_tune_jpeg),
            ("--objective", args.objective),
        ):
            if given is not None:
                raise ConfigError(f"{option} is only used with --fine-tune STEPS.")
        return None
    if not args.encoder:
        raise encoder_needed()
    if protection == "photo" and args.objective is not None:
        raise ConfigError(
            "--objective applies to fine-tuning the universal pattern (--protection universal); "
            "photo fine-tuning pushes the encoder's latent off course."
        )
    if protection == "universal" and args.fine_tune_jpeg is not None:
        raise ConfigError("--fine-tune-jpeg applies to photo fine-tuning (--protection photo).")
    return FineTuning(
        steps=args.fine_tune,
        encoder=args.encoder,
        jpeg=fine_tune_jpeg(args.fine_tune_jpeg) if protection == "photo" else None,
        objective=args.objective or DEFAULT_FINETUNE_OBJECTIVE,
        device=args.device,
    )


def _run(args: argparse.Namespace) -> int:
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.events import Event, Progress
    from spdesk.core.preview import (
        PreviewEngine,
        PreviewRequest,
        check_outputs,
        resolve_prompt,
        save_outputs,
    )
    from spdesk.core.usecases import preview_photo

    request = PreviewRequest(
        prompt=resolve_prompt(args.prompt, args.preset),
        mode=args.mode,
        strength=args.strength_edit,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        working_size=args.size,
        mask_mode=args.mask_mode,
        mask=_mask(args.mask),
    )
    request.validate()
    protection = _protection(args)
    fine_tuning = _fine_tuning(args, protection)
    # Before minutes of editing.
    check_outputs(args.out, args.photo.stem, replace=args.force, photo=args.photo)
    printer = ProgressPrinter(quiet=args.json)

    def on_event(event: Event) -> None:
        if isinstance(event, Progress):
            what = STAGES.get(event.stage, "AI edit (original, protected, noise)")
            printer.update(what, event.done, event.total)

    engine = PreviewEngine(
        args.model_dir if args.mode == "img2img" else None,
        inpaint_dir=args.model_dir if args.mode == "inpaint" else None,
        device=args.device,
        offload=args.offload,
    )
    if engine.offload_ignored:
        print(
            f"Note: --offload saves GPU memory on a CUDA GPU only; the edit runs on "
            f"{engine.device.type} without it.",
            file=sys.stderr,
        )
    with engine:  # the pipelines are freed before the sheet is drawn and saved
        try:
            outcome = preview_photo(
                args.photo,
                args.perturbation,
                request,
                ApplyOptions(working_size=args.size, strength=args.strength),
                engine,
                protection=protection,
                fine_tuning=fine_tuning,
                on_event=on_event,
                cancel=cancel_on_sigint(),
            )
        finally:
            printer.close()
    result = outcome.result
    paths = save_outputs(result, args.out, stem=args.photo.stem, replace=args.force)
    if args.json:
        tuned = dataclasses.asdict(fine_tuning) if fine_tuning is not None else None
        shown = {"protection": protection, "fine_tuning": tuned}
        print_json(result.to_json() | shown | {"files": {k: str(p) for k, p in paths.items()}})
    else:
        if fine_tuning is not None:
            print(
                f"Protection fine-tuned {fine_tuning.steps} steps against {fine_tuning.encoder}, "
                "as spdesk protect --fine-tune writes it."
            )
        print(result.note)
        print(result.verdict)
        for warning in result.warnings:
            print(f"Note: {warning}")
        # An installer's app has no pip: there, FSIM is simply not among the figures.
        if result.figures["protected_edit"].get("fsim") is None and not getattr(sys, "frozen", 0):
            print(f"Note: FSIM not computed: {_without_fsim()}.")
        print(f"Comparison sheet: {paths['sheet']}")
    return EXIT_OK


def _without_fsim() -> str:
    """Why FSIM is missing, without a pip command: piq needs torchvision, and an unpinned one
    can replace the torch build (CUDA, ROCm) a user chose."""
    import importlib.util

    if importlib.util.find_spec("piq") is None:
        return "it needs the piq package, with a torchvision built for your torch"
    return "piq is installed but does not load (it needs a torchvision built for your torch)"
