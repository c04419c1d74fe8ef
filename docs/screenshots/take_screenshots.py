"""Drive the real app windows and save screenshots for the README (run under Xvfb).

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/screenshots/take_screenshots.py

Windows open at the size they take on that screen (a small laptop's), so the shots show what fits.
``--tour FOLDER`` also grabs the states a first-time user meets (empty window, a re-run after a
settings change, the other modes, a missing model, fine-tuning under way, a cancelled run, a
folder without photos, the train dialog empty and running, About), each as the whole screen, to
look at for each screen size (e.g. also ``-screen 0 1920x1080x24``); they are not committed.

Everything runs for real in a throw-away ``SPDESK_HOME``, on made-up photos (the benchmark's
synthetic scene: no real photo is shown in spdesk's documents): a personal perturbation is trained
with the real TAESD weights of ``../shared/models`` (train dialog), selected in the main window,
and a queue of photos (one of them a broken file) is protected by the job runner. The preview uses
tiny random-weight SD components (no SD 1.5 weights here), so its "edits" are noise; the model
manager installs the training VAE from the local test hub.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SPDESK_SHARED", ROOT.parent / "shared"))
OUT = Path(__file__).resolve().parent
TOUR = False  # --tour: more states, whole-screen shots, into --out


sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("SPDESK_HOME", tempfile.mkdtemp(prefix="spdesk-shots-"))
os.environ.setdefault("HF_HOME", os.path.join(os.environ["SPDESK_HOME"], "hf"))

from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from spdesk.gui.app import create_app  # noqa: E402


def wait_until(condition: Callable[[], bool], timeout: float = 300.0) -> None:
    loop = QEventLoop()  # its processEvents, unlike the static one, leaks nothing in PySide 6.12
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        _spin(loop)
    for _ in range(20):  # let layouts and repaints settle
        _spin(loop)


def _spin(loop: QEventLoop) -> None:
    loop.processEvents()
    # No app.exec() runs here: widgets removed with deleteLater (a row's Retry button) would
    # stay on screen, which the app never shows.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    time.sleep(0.01)


def grab(widget: QWidget, name: str) -> None:
    """Save ``widget`` as ``name``.png; on a tour, the whole screen (is it all on it?)."""
    widget.raise_()
    wait_until(lambda: True)
    path = OUT / f"{name}.png"
    screen = widget.screen()
    shot = screen.grabWindow(0) if TOUR and screen is not None else widget.grab()
    shot.save(str(path))
    print("saved", path)


def grab_next_modal(name: str) -> None:
    """Grab the next modal box the app opens (a question, a warning) and close it."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if box is None:
            QTimer.singleShot(50, poll)
            return
        grab(box, name)
        box.close()

    QTimer.singleShot(50, poll)


SCENES = ("beach", "portrait", "garden", "studio", "street", "market", "harbour", "forest", "dusk")


def synthetic_photos(folder: Path, count: int) -> list[Path]:
    """Made-up photos (no real photo may be shown in spdesk's documents): the benchmark's scene,
    in other sizes, colours and orientations."""
    from bench_protection import synthetic_scene
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        width, height = (480, 320) if index % 3 else (320, 440)
        scene = synthetic_scene(width, height)[:, :, [(0, 1, 2), (2, 1, 0), (1, 2, 0)][index % 3]]
        scene = scene[:, ::-1] if index % 2 else scene
        path = folder / f"{SCENES[index % len(SCENES)]}-{index + 1:02d}.jpg"
        Image.fromarray(scene).save(path, quality=92)
        written.append(path)
    return written


def photos(home: Path) -> Path:
    folder = home / "Holiday photos"
    if not folder.is_dir():
        for index, path in enumerate(synthetic_photos(folder, 9)):
            if index % 3 == 2:
                (folder / "Beach").mkdir(exist_ok=True)
                path.rename(folder / "Beach" / path.name)
        (folder / "scan-0042.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))
    return folder


def train_shot(settings: object, home: Path) -> Path:
    from spdesk.gui.train_dialog import TrainDialog

    train_photos = home / "My portfolio"
    synthetic_photos(train_photos, 10)
    dialog = TrainDialog(settings, device="cpu")  # type: ignore[arg-type]
    dialog.confirm = lambda _title, _text: True  # a short run on purpose (slow shared CPU)
    dialog.folder_edit.setText(str(train_photos))
    dialog.encoder_combo.setCurrentIndex(dialog.encoder_combo.findData("custom"))
    dialog.encoder_edit.setText(str(SHARED / "models" / "taesd" / "taesd_f8e4m3.safetensors"))
    dialog.size_spin.setValue(64)  # small crops: these 2 shared CPU cores are slow
    dialog.steps_spin.setValue(48)  # two held-out checks: the chart draws lines
    dialog.show()
    if TOUR:
        wait_until(lambda: dialog.photo_count is not None)
        grab(dialog, "train-empty")
    dialog.start()
    if TOUR:
        wait_until(lambda: dialog.progress.value() >= 300 or not dialog.runner.running)
        grab(dialog, "train-running")
    wait_until(lambda: not dialog.runner.running)
    dialog.name_edit.setText("My portfolio ±8")
    grab(dialog, "train-dialog")
    path = dialog.save_to_library()
    assert path is not None
    dialog.close()
    return path


def main_window_shots(settings: object, home: Path, perturbation: Path) -> None:
    from spdesk.gui.main_window import MainWindow

    window = MainWindow(settings)  # type: ignore[arg-type]
    window.options_panel.refresh_perturbations(select=str(perturbation))
    window.show()
    window.detect_device()  # as app.main() does once the window is up
    if TOUR:
        grab(window, "main-empty")
    window.add_paths([photos(home)])
    wait_until(lambda: not window.scan_runner.running and bool(window.queue.paths()))
    wait_until(lambda: window.queue.wait_for_thumbnails(10))
    grab(window, "main-queue")
    window.start_job()
    wait_until(lambda: not window.job_runner.running)
    wait_until(lambda: "detecting" not in window.device_label.text())
    grab(window, "main-done")
    window.options_panel.show_more(True)
    grab(window, "main-more-options")
    window.options_panel.show_more(False)
    if TOUR:
        tour_main(window, home)
    window.close()


def tour_main(window: Any, home: Path) -> None:
    """The states a first-time user meets after a first run: other modes, errors, a re-run."""
    panel = window.options_panel
    panel.strength_group.button(2).click()  # High: the finished rows are pending again
    grab(window, "main-rerun")
    panel.set_mode("universal")
    grab(window, "main-universal")
    panel.set_mode("finetune")
    panel.set_encoder("sd15")
    grab(window, "main-finetune")
    grab_next_modal("main-finetune-missing-model")
    window.start_job()
    wait_until(lambda: True)
    panel.set_encoder(str(SHARED / "models" / "taesd" / "taesd_f8e4m3.safetensors"))
    panel.steps_spin.setValue(20)
    window.start_job()
    wait_until(lambda: "left" in window.progress_label.text() or not window.job_runner.running)
    grab(window, "main-finetuning")
    window.cancel_job()
    wait_until(lambda: not window.job_runner.running)
    grab(window, "main-cancelled")
    panel.set_mode("photo")
    window.clear_queue()
    empty = home / "Notes"
    empty.mkdir(exist_ok=True)
    (empty / "readme.txt").write_text("not a photo")
    window.add_paths([empty])
    wait_until(lambda: not window.scan_runner.running)
    grab(window, "main-no-photos")


def preview_shot(home: Path, perturbation: Path) -> None:
    from tiny_sd import save_tiny_sd

    from spdesk.gui.preview_panel import PreviewDialog
    from spdesk.gui.settings import ProtectOptions

    model = save_tiny_sd(home / "tiny-sd")
    folder = home / "Holiday photos"
    if not folder.is_dir():
        photos(home)
    photo = folder / "portrait-02.jpg"
    options = ProtectOptions(perturbation=str(perturbation), strength=8, device="cpu")
    # What a first-time user sees: no Stable Diffusion model yet, the protection at once.
    dialog = PreviewDialog(photo, options)
    dialog.show()
    wait_until(lambda: dialog.view is not None)
    grab(dialog, "preview-no-model")
    dialog.close()
    dialog = PreviewDialog(photo, options, model_dir=model, inpaint_dir=model)
    dialog.working_size = 256
    dialog.steps_spin.setValue(10)
    dialog.show()
    wait_until(lambda: dialog.view is not None)
    dialog.start()
    wait_until(lambda: not dialog.runner.running)
    grab(dialog, "preview")
    dialog.close()


def models_shot() -> None:
    from hub_server import HubServer, tiny_sd_repo_files

    from spdesk.core.models.settings import StoreSettings
    from spdesk.core.models.sources import SD15_REPO, SD15_REVISION
    from spdesk.core.models.store import ModelStore
    from spdesk.gui.model_manager import ModelManagerDialog

    with HubServer(lifetime_s=600) as hub:
        hub.add_repo(SD15_REPO, SD15_REVISION, tiny_sd_repo_files())
        dialog = ModelManagerDialog(
            store_factory=lambda: ModelStore(settings=StoreSettings(endpoint=hub.url))
        )
        dialog.confirm = lambda _title, _text: True
        dialog.show()
        wait_until(lambda: dialog.table.rowCount() == 4 and not dialog.runner.running)
        dialog.select("train")
        dialog.download()
        wait_until(lambda: "train" in dialog.statuses and dialog.statuses["train"].present)
        dialog.select("preview")
        grab(dialog, "model-manager")
        dialog.confirm = lambda title, text: consent_shot(dialog, title, text)
        dialog.download()  # plans, shows the consent line, and is declined
        wait_until(lambda: not dialog.runner.running)
        dialog.close()


def consent_shot(parent: QWidget, title: str, text: str) -> bool:
    """Show the download consent question as the dialog does, grab it, and decline."""
    from spdesk.gui.model_manager import question_box

    box = question_box(parent, title, text)
    box.show()
    grab(box, "model-manager-consent")
    box.close()
    return False


def about_shot() -> None:
    from spdesk.gui.about import AboutDialog

    dialog = AboutDialog(None, device="cpu")
    dialog.show()
    wait_until(lambda: not dialog.runner.running)
    grab(dialog, "about")
    dialog.close()


def random_perturbation() -> Path:
    """A ±8 random-sign pattern in the library, when the train step is skipped."""
    import numpy as np

    from spdesk.core.perturbation import library_path_for, save_perturbation

    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(3, 512, 512)).astype(np.float32)
    meta = {"name": "Random signs ±8", "description": "Same-strength random noise, for comparison."}
    return save_perturbation(
        library_path_for("Random signs"), signs * 8 / 255, eps=8, metadata=meta
    )


def main() -> int:
    import argparse

    from spdesk.gui.settings import open_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="train,main,preview,models")
    parser.add_argument("--tour", help="more states, as whole-screen shots, into this folder")
    args = parser.parse_args()
    parts = args.only.split(",")
    if args.tour:
        global OUT, TOUR
        OUT, TOUR = Path(args.tour), True
        OUT.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ["SPDESK_HOME"])
    create_app(["spdesk"])
    settings = open_settings()
    started = time.monotonic()
    perturbation = train_shot(settings, home) if "train" in parts else random_perturbation()
    print(f"train: {time.monotonic() - started:.0f} s")
    if "main" in parts:
        main_window_shots(settings, home, perturbation)
        print(f"main: {time.monotonic() - started:.0f} s")
    if "preview" in parts:
        preview_shot(home, perturbation)
        print(f"preview: {time.monotonic() - started:.0f} s")
    if "models" in parts:
        models_shot()
        print(f"models: {time.monotonic() - started:.0f} s")
    if "about" in parts:
        about_shot()
    return 0


if __name__ == "__main__":
    sys.exit(main())
