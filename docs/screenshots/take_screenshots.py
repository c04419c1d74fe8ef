"""Drive the real app windows and save screenshots for the README (run under Xvfb).

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/screenshots/take_screenshots.py

Windows open at the size they take on that screen (a small laptop's), so the shots show what fits.

Everything runs for real in a throw-away ``SPDESK_HOME``: a personal perturbation is trained
with the real TAESD weights on photos from ``../shared/data/imagenet-sample`` (train dialog),
selected in the main window, and a queue of photos (one of them a broken file) is protected by the
job runner. The preview uses tiny random-weight SD components (no SD 1.5 weights here), so its
"edits" are noise; the model manager installs the training VAE from the local test hub.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SPDESK_SHARED", ROOT.parent / "shared"))
OUT = Path(__file__).resolve().parent


sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("SPDESK_HOME", tempfile.mkdtemp(prefix="spdesk-shots-"))
os.environ.setdefault("HF_HOME", os.path.join(os.environ["SPDESK_HOME"], "hf"))

from PySide6.QtCore import QEventLoop  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from spdesk.gui.app import create_app  # noqa: E402


def wait_until(condition: Callable[[], bool], timeout: float = 300.0) -> None:
    loop = QEventLoop()  # its processEvents, unlike the static one, leaks nothing in PySide 6.12
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        loop.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let layouts and repaints settle
        loop.processEvents()
        time.sleep(0.01)


def grab(widget: QWidget, name: str) -> None:
    widget.raise_()
    wait_until(lambda: True)
    path = OUT / f"{name}.png"
    widget.grab().save(str(path))
    print("saved", path)


def photos(home: Path) -> Path:
    source = SHARED / "data" / "imagenet-sample"
    folder = home / "Holiday photos"
    (folder / "Beach").mkdir(parents=True)
    picks = sorted(source.glob("*.JPEG"))[::97][:9]
    for index, path in enumerate(picks):
        target = folder / ("Beach" if index % 3 == 2 else "") / path.name.split("_", 1)[1].lower()
        shutil.copy(path, target.with_suffix(".jpg"))
    (folder / "scan-0042.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated" + bytes(64))
    return folder


def train_shot(settings: object, home: Path) -> Path:
    from spdesk.gui.train_dialog import TrainDialog

    train_photos = home / "My portfolio"
    train_photos.mkdir()
    for path in sorted((SHARED / "data" / "imagenet-sample").glob("*.JPEG"))[1::50][:10]:
        shutil.copy(path, train_photos / path.name)
    dialog = TrainDialog(settings, device="cpu")  # type: ignore[arg-type]
    dialog.confirm = lambda _title, _text: True  # a short run on purpose (slow shared CPU)
    dialog.folder_edit.setText(str(train_photos))
    dialog.encoder_combo.setCurrentIndex(dialog.encoder_combo.findData("custom"))
    dialog.encoder_edit.setText(str(SHARED / "models" / "taesd" / "taesd_f8e4m3.safetensors"))
    dialog.size_spin.setValue(64)  # small crops: these 2 shared CPU cores are slow
    dialog.steps_spin.setValue(16)
    dialog.show()
    dialog.start()
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
    window.close()


def preview_shot(home: Path, perturbation: Path) -> None:
    from tiny_sd import save_tiny_sd

    from spdesk.gui.preview_panel import PreviewDialog
    from spdesk.gui.settings import ProtectOptions

    model = save_tiny_sd(home / "tiny-sd")
    folder = home / "Holiday photos"
    if not folder.is_dir():
        photos(home)
    photo = folder / "lion.jpg"
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
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
    box.show()
    grab(box, "model-manager-consent")
    box.close()
    return False


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
    parts = parser.parse_args().only.split(",")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
