"""``spdesk models``: what is installed, download, verify, remove, import, move the store.

Every action is one call on :class:`spdesk.core.models.store.ModelStore`, the same the app's
model manager makes; ``--json`` prints one machine-readable object on stdout, progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from spdesk.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    ProgressPrinter,
    cancel_on_sigint,
    format_duration,
    print_json,
)
from spdesk.core.models.sources import FEATURES, default_source

# What each feature downloads, in the words the store itself uses for it.
FEATURE_HELP = "; ".join(f"{f}: {default_source(f).description}" for f in FEATURES)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "models",
        help="download, check and manage the Stable Diffusion weights",
        description=(
            "Models spdesk uses: 'train' (SD 1.5 VAE, ~170 MB) for protecting and training, "
            "'preview' (~2.1 GB) for the img2img preview, 'inpaint' for the inpainting preview, "
            "'taesd' for the fast tiny encoder. Downloaded once, verified, then used offline."
        ),
    )
    actions = parser.add_subparsers(
        dest="models_action", metavar="ACTION", required=True, help="what to do"
    )

    status = actions.add_parser("status", help="what is installed, where, sizes, verified")
    _json_flag(status)
    status.set_defaults(func=run_status)

    download = actions.add_parser("download", help="fetch what a feature needs (resumable)")
    download.add_argument(
        "--for", dest="feature", choices=FEATURES, default="train",
        help=f"what to download (train): {FEATURE_HELP}",
    )  # fmt: skip
    download.add_argument("--quiet", action="store_true", help="no progress lines")
    _json_flag(download)
    download.set_defaults(func=run_download)

    verify = actions.add_parser(
        "verify",
        help="re-hash installed files (a damaged download is deleted, to download again; a "
        "damaged import is kept but no longer used, to import again)",
    )
    verify.add_argument(
        "--for", dest="feature", choices=FEATURES, default=None,
        help=f"check only this (default: everything installed): {FEATURE_HELP}",
    )  # fmt: skip
    _json_flag(verify)
    verify.set_defaults(func=run_verify)

    remove = actions.add_parser("remove", help="delete downloaded or imported models")
    which = remove.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--for", dest="feature", choices=FEATURES,
        help=f"what the store downloaded for this: {FEATURE_HELP}",
    )  # fmt: skip
    which.add_argument("--imported", metavar="NAME", help="an imported model (see status)")
    which.add_argument(
        "--all", action="store_true", help="every model the store installed (nothing else)"
    )
    _json_flag(remove)
    remove.set_defaults(func=run_remove)

    importer = actions.add_parser(
        "import", help="use a local diffusers folder, SD 1.5 checkpoint or TAESD weights file"
    )
    importer.add_argument(
        "path", metavar="PATH", type=Path,
        help="a diffusers folder, an SD 1.5 .safetensors checkpoint or a TAESD weights file",
    )  # fmt: skip
    importer.add_argument("--name", default=None, help="name in the store (default: from PATH)")
    _json_flag(importer)
    importer.set_defaults(func=run_import)

    move = actions.add_parser("move", help="move the store to another folder (saved)")
    move.add_argument("folder", metavar="FOLDER", type=Path, help="the new folder for the store")
    _json_flag(move)
    move.set_defaults(func=run_move)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _store() -> Any:
    from spdesk.core.models.store import ModelStore

    return ModelStore()


def _size(n: float) -> str:
    from spdesk.core.models.selection import human_size

    return human_size(int(n))


# --- status ---------------------------------------------------------------------------------------
def run_status(args: argparse.Namespace) -> int:
    from spdesk.core.models.layout import read_model_manifest

    store = _store()
    rows = store.status()
    imported = [
        {"name": f.name, "folder": str(f), **read_model_manifest(f)}
        for f in store.imported_folders()
    ]
    for item in imported:
        item.pop("files", None)
        item.pop("features", None)
    if args.json:
        features = [dataclasses.asdict(r) for r in rows]
        endpoint = store.settings.resolved_endpoint()
        print_json(
            {
                "root": str(store.root),
                "endpoint": endpoint,
                "features": features,
                "imported": imported,
            }
        )
        return EXIT_OK
    print(f"Model folder: {store.root} ({store.root_reason})")
    print(f"Hub: {store.settings.resolved_endpoint()}")
    for r in rows:
        if r.repair:
            print(f"  {r.feature:8} damaged ({r.origin}, {r.folder}); import it again: {r.repair}")
        elif r.present:
            state = f"{_size(r.size_bytes)}, {r.origin}{', verified' if r.verified else ''}"
            print(f"  {r.feature:8} installed ({state})  {r.folder}")
        elif r.partial_bytes:
            print(
                f"  {r.feature:8} partly downloaded ({_size(r.partial_bytes)}); run: "
                f"spdesk models download --for {r.feature}"
            )
        else:
            print(f"  {r.feature:8} not installed; run: spdesk models download --for {r.feature}")
    for item in imported:
        provides = ", ".join(item.get("provides", []))
        print(f"  imported {item['name']} ({provides}) from {item.get('origin', '?')}")
    return EXIT_OK


# --- download -------------------------------------------------------------------------------------
class _DownloadPrinter:
    """Turns the store's download events into terminal lines."""

    def __init__(self, quiet: bool) -> None:
        self.bar = ProgressPrinter(quiet=quiet)

    def __call__(self, event: Any) -> None:
        from spdesk.core.models import events as download_events

        if isinstance(event, download_events.DownloadListing):
            self.bar.line(f"Asking {event.endpoint} for {event.repo_id}...")
        elif isinstance(event, download_events.TransferRetrying):
            self.bar.line(
                f"{event.file}: the connection stopped at {_size(event.done)} of "
                f"{_size(event.size)} ({event.reason}); asking again from there in "
                f"{event.wait_s:g} s"
                + (f" ({event.stalled} of {event.give_up} tries)." if event.stalled else ".")
            )
        elif isinstance(event, download_events.HubRetrying):
            self.bar.line(event.text + ("; Ctrl+C stops." if event.attempt == 1 else "."))
        elif isinstance(event, download_events.DownloadPlanned):
            self.bar.line(
                f"{event.repo_id}@{event.revision[:12]}: {event.files} files, "
                f"{_size(event.to_fetch_bytes)} to fetch of {_size(event.total_bytes)}, "
                f"{_size(event.free_bytes)} free; into {event.target}"
            )
        elif isinstance(event, download_events.DownloadProgress):
            label = (
                f"{event.file} {_size(event.done)}/{_size(event.total)} "  # unet/..., vae/...
                f"{_size(event.speed_bps)}/s"
            )
            self.bar.update(label, event.done, event.total, event.eta_s)
        elif isinstance(event, download_events.FileVerifying) and event.size >= 50_000_000:
            self.bar.line(f"Checking the sha256 of {event.file} ({_size(event.size)})...")
        elif isinstance(event, download_events.FileRejected):
            again = "fetching it again" if event.retrying else "giving up"
            self.bar.line(f"{event.file}: {event.algorithm} mismatch, {again}")


def run_download(args: argparse.Namespace) -> int:
    from spdesk.core.models import events as download_events

    store = _store()
    events: list[Any] = []
    printer = _DownloadPrinter(quiet=args.quiet or args.json)

    def on_event(event: Any) -> None:
        if isinstance(event, download_events.DownloadFinished | download_events.DownloadPlanned):
            events.append(event)
        printer(event)

    try:
        folder = store.download(args.feature, on_event, cancel_on_sigint())
    finally:
        printer.bar.close()
    finished = next((e for e in events if isinstance(e, download_events.DownloadFinished)), None)
    summary = {
        "feature": args.feature,
        "folder": str(folder),
        "already_installed": finished is None,
        "total_bytes": finished.total_bytes if finished else None,
        "fetched_bytes": finished.fetched_bytes if finished else 0,
        "elapsed_s": round(finished.elapsed_s, 2) if finished else 0.0,
    }
    if args.json:
        print_json(summary)
    elif finished is None:
        print(f"Already installed: {folder}")
    else:
        print(
            f"Installed and verified in {folder} (fetched {_size(finished.fetched_bytes)} "
            f"in {format_duration(finished.elapsed_s)})."
        )
    return EXIT_OK


# --- verify / remove / import / move ---------------------------------------------------------
def run_verify(args: argparse.Namespace) -> int:
    store = _store()
    # Also downloads damaged since (a file cut short or deleted): not installed any more, and
    # "Nothing installed to verify" (exit 0) hid them.
    there = [s.feature for s in store.status() if s.present or store.recorded(s.feature)]
    features = [args.feature] if args.feature else there
    results = [store.verify(f) for f in features]
    repairs = {r.feature: store.status_of(r.feature).repair for r in results if r.folder}
    if not args.feature:  # everything installed: imports no feature uses now too
        for result, repair in store.verify_imports({r.folder for r in results if r.folder}):
            results.append(result)
            repairs[result.feature] = repair
    ok = all(r.ok for r in results)
    if args.json:
        rows = [{**dataclasses.asdict(r), "ok": r.ok} for r in results]
        print_json({"ok": ok, "results": rows})
    elif not results:
        print("Nothing installed to verify.")
    for r in results if not args.json else []:
        if r.ok:
            print(f"{r.feature}: {r.checked_files} files verified in {r.folder}")
        else:
            print(f"{r.feature}: " + "; ".join(r.problems), file=sys.stderr)
            repair = repairs.get(r.feature, "")
            print(
                f"  run: {repair or f'spdesk models download --for {r.feature}'}", file=sys.stderr
            )
    return EXIT_OK if ok else EXIT_FAILED


def run_remove(args: argparse.Namespace) -> int:
    store = _store()
    if args.all:
        what, freed = f"every model spdesk installed in {store.root}", store.remove()
        nothing = f"spdesk has installed no model in {store.root}"
    elif args.imported:
        what, freed = f"imported model {args.imported}", store.remove_imported(args.imported)
        nothing = f"imported model {args.imported} holds no files"
    else:
        also = store.removal_note(args.feature)  # asked first: after, nothing is shared
        what, freed = f"the {args.feature} model files", store.remove(args.feature)
        what += f" ({also})" if also else ""
        nothing = f"no {args.feature} model files are installed in {store.root}"
    if args.json:
        print_json({"removed": what, "freed_bytes": freed})
    elif freed == 0:  # a link or a file of any size counts: nothing of the store's was there
        print(f"Nothing to remove: {nothing}.")
    else:
        print(f"Removed {what}: {_size(freed)} freed.")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    store = _store()
    if not args.json:
        print(f"Checking and copying {args.path} ...", file=sys.stderr)
    # A single file's configs may come from the hub: said as a download's, Ctrl+C stops it
    printer = _DownloadPrinter(quiet=args.json)
    try:
        result = store.import_path(
            args.path, name=args.name, on_event=printer, cancel=cancel_on_sigint()
        )
    finally:
        printer.bar.close()
    if args.json:
        print_json(dataclasses.asdict(result))
    else:
        print(
            f"Imported {result.name} ({result.kind}, {_size(result.size_bytes)}) into "
            f"{result.folder}; provides: {', '.join(result.provides)}."
        )
    return EXIT_OK


def run_move(args: argparse.Namespace) -> int:
    store = _store()
    old = store.root
    new = store.relocate(args.folder, cancel=cancel_on_sigint())  # a cancelled copy is removed
    if args.json:
        print_json({"from": str(old), "to": str(new)})
    elif old.resolve() == new:
        print(f"The model folder is already {new}.")
    else:
        print(f"Model folder moved from {old} to {new}.")
    return EXIT_OK
