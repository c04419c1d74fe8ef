"""Benchmark: the same short training run in the train dialog and in ``spdesk train``.

Not a test. Issue 14 measured a 10-step run at 3 min 11 s in the dialog against 59 s in the CLI.
This runs both with the same photos (``--count`` copied from ``--photos``), encoder, budget,
steps, crop size, batch and no EOT transforms, one after the other, and prints for each the wall
time from the start request to the result, the core's own seconds per step, and, for the dialog,
the time-left estimates it showed against the time that was really left.

    SPDESK_SHARED=../shared nice -n 19 env OMP_NUM_THREADS=1 QT_QPA_PLATFORM=offscreen \\
        python benchmarks/bench_train_dialog.py --steps 10 --size 128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("SPDESK_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def photo_folder(source: Path, count: int, into: Path) -> Path:
    folder = into / "photos"
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.JPEG"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def cli_run(folder: Path, args: argparse.Namespace, into: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "spdesk", "train", str(folder), "--out",
               str(into / "cli.safetensors"), "--encoder", args.encoder, "--steps",
               str(args.steps), "--size", str(args.size), "--batch", "4", "--device", "cpu",
               "--json"]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.monotonic() - started
    summary = json.loads(done.stdout)
    return {"wall_s": wall, "seconds_per_step": float(summary["seconds_per_step"])}


def dialog_run(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from PySide6.QtCore import QEventLoop

    from spdesk.core.events.training import TrainStep
    from spdesk.gui.app import create_app
    from spdesk.gui.settings import open_settings
    from spdesk.gui.train_dialog import TrainDialog

    create_app(["spdesk"])
    dialog = TrainDialog(open_settings(), device="cpu")
    dialog.confirm = lambda _title, _text: True  # a short run on purpose
    dialog.folder_edit.setText(str(folder))
    dialog.encoder_combo.setCurrentIndex(dialog.encoder_combo.findData("custom"))
    dialog.encoder_edit.setText(args.encoder)
    dialog.size_spin.setValue(args.size)
    dialog.steps_spin.setValue(args.steps)
    for check in dialog.robust_checks.values():
        check.setChecked(False)
    estimates: list[tuple[float, int, float]] = []  # (time, step, estimate of the time left)

    def on_event(event: object) -> None:
        if isinstance(event, TrainStep) and event.eta_s is not None:
            estimates.append((time.monotonic(), event.step, event.eta_s))

    dialog.runner.core_event.connect(on_event)
    loop = QEventLoop()
    dialog.runner.finished.connect(loop.quit)
    started = time.monotonic()
    if not dialog.start():
        raise SystemExit(f"the dialog did not start: {dialog.status_label.text()}")
    loop.exec()
    ended = time.monotonic()
    result = dialog.result
    if result is None:
        raise SystemExit(f"the dialog's run failed: {dialog.status_label.text()}")
    return {
        "wall_s": ended - started,
        "seconds_per_step": float(result.seconds_per_step),
        "estimates": [
            {"step": step, "estimate_s": round(eta, 1), "really_left_s": round(ended - at, 1)}
            for at, step, eta in estimates
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(SHARED / "data" / "imagenet-sample"))
    parser.add_argument(
        "--encoder", default=str(SHARED / "models" / "taesd" / "taesd_f8e4m3.safetensors")
    )
    parser.add_argument("--count", type=int, default=24, help="photos copied for the run")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spdesk-bench-train-") as tmp:
        into = Path(tmp)
        os.environ["SPDESK_HOME"] = str(into / "home")  # never the user's settings or library
        folder = photo_folder(Path(args.photos), args.count, into)
        cli = cli_run(folder, args, into)
        dialog = dialog_run(folder, args)
    print(json.dumps({"settings": vars(args), "cli": cli, "dialog": dialog}, indent=2))
    print(
        f"{args.steps} steps at {args.size} px on {args.count} photos: CLI {cli['wall_s']:.1f} s "
        f"wall ({cli['seconds_per_step']:.2f} s/step), dialog {dialog['wall_s']:.1f} s wall "
        f"({dialog['seconds_per_step']:.2f} s/step)"
    )


if __name__ == "__main__":
    main()
