"""The model manager against the local test hub: consent, progress, cancel, resume, verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

pytest.importorskip("spdesk.core.models.store", reason="the model store has not landed yet")
pytest.importorskip("hub_server", reason="the test hub server has not landed yet")

from hub_server import HubServer, tiny_sd_repo_files

from spdesk.core.events import CancelToken, EventSink
from spdesk.core.models.events import DownloadProgress
from spdesk.core.models.settings import StoreSettings
from spdesk.core.models.sources import SD15_REPO, SD15_REVISION
from spdesk.core.models.store import ModelStore
from spdesk.gui.model_manager import ModelManagerDialog


@pytest.fixture(scope="module")
def repo_files() -> dict[str, bytes]:
    return tiny_sd_repo_files()


@pytest.fixture
def hub(repo_files: dict[str, bytes]) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_repo(SD15_REPO, SD15_REVISION, repo_files)
        yield server


class PausingStore(ModelStore):
    """Pauses its download at the first progress event, as if the network were slow
    (at the first of the weights, with ``weights_only``)."""

    weights_only = False

    def download(  # type: ignore[override]
        self, feature: Any, on_event: EventSink, cancel: CancelToken | None = None, **kw: Any
    ) -> Any:
        assert cancel is not None

        def sink(event: Any) -> None:
            on_event(event)
            weights = event.file.endswith(".safetensors") if hasattr(event, "file") else False
            if isinstance(event, DownloadProgress) and (weights or not self.weights_only):
                cancel.pause()

        return super().download(feature, sink, cancel, **kw)


def _cell(dialog: ModelManagerDialog, row: int, column: int) -> str:
    item = dialog.table.item(row, column)
    return item.text() if item is not None else ""


def _dialog(qtbot: QtBot, factory: Any) -> ModelManagerDialog:
    dialog = ModelManagerDialog(store_factory=factory)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.table.rowCount() == 4 and not dialog.runner.running)
    return dialog


def test_download_with_consent_then_verify(qtbot: QtBot, hub: HubServer) -> None:
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    assert "Not installed" in _cell(dialog, 0, 2)
    asked: list[str] = []

    def consent(_title: str, text: str) -> bool:
        asked.append(text)
        return True

    dialog.confirm = consent
    dialog.select("train")
    assert dialog.download()
    # The status refresh lands before the worker's finished signal re-enables the buttons.
    qtbot.waitUntil(
        lambda: dialog.statuses["train"].present and not dialog.runner.running, timeout=30_000
    )
    assert " will be downloaded to " in asked[0]
    assert "Installed" in _cell(dialog, 0, 2)
    qtbot.waitUntil(dialog.verify_button.isEnabled, timeout=5_000)
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        assert dialog.verify()
    assert "intact" in dialog.status_label.text()


def test_refusing_consent_downloads_nothing(qtbot: QtBot, hub: HubServer) -> None:
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.confirm = lambda _title, _text: False
    dialog.select("train")
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        dialog.download()
    qtbot.wait(50)
    assert not dialog.runner.running
    assert "not started" in dialog.status_label.text()
    assert not dialog.statuses["train"].present
    assert hub.bytes_served() == 0


def test_cancel_keeps_partial_data_and_download_resumes(
    qtbot: QtBot, hub: HubServer, repo_files: dict[str, bytes]
) -> None:
    dialog = _dialog(qtbot, lambda: PausingStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.confirm = lambda _title, _text: True
    dialog.select("train")
    dialog.download()
    qtbot.waitUntil(lambda: " of " in dialog.status_label.text(), timeout=30_000)
    assert dialog.cancel_button.isEnabled()
    said: list[str] = []
    dialog.runner.cancelled.connect(lambda: said.append(dialog.status_label.text()))
    with qtbot.waitSignal(dialog.runner.cancelled, timeout=10_000):
        dialog.cancel_button.click()
    # Read when the cancellation lands: the status refresh that follows may replace the text.
    qtbot.waitUntil(lambda: bool(said), timeout=5_000)
    assert "cancelled" in said[0]
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    assert not dialog.statuses["train"].present
    dialog.store_factory = lambda: ModelStore(settings=StoreSettings(endpoint=hub.url))
    dialog.select("train")
    dialog.download()
    qtbot.waitUntil(lambda: dialog.statuses["train"].present, timeout=30_000)
    vae_bytes = sum(len(data) for path, data in repo_files.items() if _is_train_file(path))
    assert hub.bytes_served() == vae_bytes, "the resumed download fetched something twice"


def test_statuses_show_whole_and_the_bar_is_only_for_downloads(
    qtbot: QtBot, hub: HubServer, tmp_path: Path
) -> None:
    from tiny_sd import save_tiny_taesd

    class PausingInWeights(PausingStore):
        weights_only = True

    hub.trickle("vae/diffusion_pytorch_model.fp16.safetensors", piece=8192, pause_s=0.05)
    dialog = _dialog(qtbot, lambda: PausingInWeights(settings=StoreSettings(endpoint=hub.url)))
    dialog.confirm = lambda _title, _text: True
    dialog.select("train")
    dialog.download()
    # Paused in the weights (the small files before them may already show " of "): a part of
    # them is on disk when the download is cancelled.
    qtbot.waitUntil(lambda: dialog.runner.paused, timeout=30_000)
    with qtbot.waitSignal(dialog.runner.cancelled, timeout=10_000):
        dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    assert dialog.progress.value() > 0  # the part kept
    dialog.import_model(save_tiny_taesd(tmp_path / "taesd.safetensors"))
    assert dialog.progress.value() == 0  # an import is not the download's progress
    qtbot.waitUntil(lambda: dialog.statuses["taesd"].present, timeout=30_000)
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    metrics = dialog.table.fontMetrics()
    states = [_cell(dialog, row, 2) for row in range(dialog.table.rowCount())]
    assert any(s.startswith("Partly downloaded (") for s in states), states
    assert "Installed (imported) · verified" in states
    for state in states:  # no "Partly downl…ed": the column fits its longest text
        assert dialog.table.columnWidth(2) >= metrics.horizontalAdvance(state), state


def _is_train_file(path: str) -> bool:
    return path == "vae/config.json" or path == "vae/diffusion_pytorch_model.fp16.safetensors"


def test_import_a_local_model_folder(
    qtbot: QtBot, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox
    from tiny_sd import save_tiny_sd

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog = _dialog(qtbot, ModelStore)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.import_model(empty)
    assert shown and "Traceback" not in shown[0]
    qtbot.waitUntil(lambda: not dialog.runner.running)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.import_model(save_tiny_sd(tmp_path / "my-sd15"))
    qtbot.waitUntil(lambda: dialog.statuses["preview"].present, timeout=30_000)
    assert "imported" in _cell(dialog, 1, 2)


def test_import_button_opens_a_folder_chooser_and_imports_the_choice(
    qtbot: QtBot, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog, QMessageBox
    from tiny_sd import save_tiny_sd

    folder = save_tiny_sd(tmp_path / "my-sd15")
    asked: list[str] = []
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))

    def choose(_parent: Any, title: str, *_args: Any) -> str:
        asked.append(title)
        return str(folder)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", choose)
    dialog = _dialog(qtbot, ModelStore)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert asked, f"the Import button opened no chooser; it said {shown}"
    qtbot.waitUntil(lambda: dialog.statuses["preview"].present, timeout=30_000)
    assert "False" not in dialog.status_label.text()


def test_open_folder_says_so_when_no_file_manager_opens_it(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtGui import QDesktopServices

    opened: list[Any] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or False)
    dialog = _dialog(qtbot, ModelStore)
    dialog.open_folder_button.click()
    assert opened, "the button asked no file manager"
    assert "No file manager" in dialog.status_label.text()
    assert str(dialog.root) in dialog.status_label.text()


def test_models_not_installed_show_what_they_would_download(qtbot: QtBot, hub: HubServer) -> None:
    from PySide6.QtCore import Qt

    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    features = [dialog.table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in range(4)]
    sizes = dict(zip(features, (_cell(dialog, row, 3) for row in range(4)), strict=True))
    assert sizes == {
        "train": "~170 MB",
        "preview": "~2.1 GB",
        "inpaint": "~2.1 GB",
        "taesd": "~10 MB",
    }
    assert dialog.table.item(1, 3).toolTip().startswith("About ")


def test_the_download_question_fits_the_screen_with_a_long_folder_name(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from PySide6.QtWidgets import QLabel, QMessageBox

    dialog = ModelManagerDialog(store_factory=lambda: ModelStore())
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=30_000)
    target = tmp_path / ("AVeryLongFolderNameWithoutAnyPlaceToBreakTheLine" * 4) / "sd15"
    plan = SimpleNamespace(to_fetch_bytes=2_100_000_000, target=target, free_bytes=9 * 10**10)
    asked: list[QMessageBox] = []

    def answer(box: QMessageBox) -> QMessageBox.StandardButton:
        box.show()
        asked.append(box)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "exec", answer)
    dialog._after_plan("train", plan)
    (box,) = asked
    size = box.sizeHint().expandedTo(box.minimumSizeHint())
    assert size.width() <= 1366 - 16 and size.height() <= 768 - 72, size  # a 1366x768 laptop
    assert str(target) in box.detailedText()  # the whole path, to read or copy
    label = box.findChild(QLabel, "qt_msgbox_label")
    assert label is not None and "…" in label.text() and target.name in label.text()
    assert label.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    assert "not started" in dialog.status_label.text()
    box.close()


def test_remove_deletes_the_imported_copy_the_row_shows(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox
    from tiny_sd import save_tiny_taesd

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog = _dialog(qtbot, ModelStore)
    asked: list[str] = []
    dialog.confirm = lambda _title, text: asked.append(text) is None
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        assert dialog.import_model(save_tiny_taesd(tmp_path / "taesd.safetensors"))
    qtbot.waitUntil(lambda: not dialog.runner.running and dialog.statuses["taesd"].present)
    folder = Path(dialog.statuses["taesd"].folder)
    assert dialog.statuses["taesd"].origin == "imported" and folder.is_dir()
    dialog.select("taesd")
    assert dialog.remove_button.isEnabled()
    said: list[str] = []
    dialog.runner.succeeded.connect(lambda _r: said.append(dialog.status_label.text()))
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.remove()
    qtbot.waitUntil(lambda: not dialog.runner.running)
    assert not folder.exists(), f"Remove left the imported copy in place: {said}"
    qtbot.waitUntil(lambda: not dialog.runner.running and not dialog.statuses["taesd"].present)
    assert "imported copy" in asked[0] and str(folder) in asked[0]
    assert said and said[0].startswith("Removed the imported copy; ") and "0 bytes" not in said[0]
    assert "Not installed" in _cell(dialog, 3, 2) and not shown


def test_a_model_in_the_shared_hugging_face_cache_is_not_removed(
    qtbot: QtBot, repo_files: dict[str, bytes]
) -> None:
    import hashlib
    import os

    cache = Path(os.environ["HF_HOME"]) / "hub" / f"models--{SD15_REPO.replace('/', '--')}"
    snapshot = cache / "snapshots" / SD15_REVISION
    for name, data in repo_files.items():  # the cache's layout: snapshot links to blobs
        blob = cache / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(blob)
    blobs = sorted((cache / "blobs").iterdir())
    dialog = _dialog(qtbot, ModelStore)
    assert dialog.statuses["train"].origin == "huggingface-cache"
    assert "from HF cache" in _cell(dialog, 0, 2)
    dialog.select("train")
    assert not dialog.remove_button.isEnabled()
    assert "shared Hugging Face cache" in dialog.remove_button.toolTip()
    asked: list[str] = []
    dialog.confirm = lambda _title, text: asked.append(text) is None
    assert not dialog.remove()  # e.g. a shortcut: refused, in plain words
    assert not asked and not dialog.runner.running
    said = dialog.status_label.text()
    assert "shared Hugging Face cache" in said and "Nothing was removed" in said
    assert sorted((cache / "blobs").iterdir()) == blobs


def test_closing_while_planning_asks_nothing_and_downloads_nothing(
    qtbot: QtBot, hub: HubServer
) -> None:
    import time

    class SlowPlan(ModelStore):
        def plan(self, feature: Any) -> Any:
            time.sleep(0.5)  # a slow hub listing
            return super().plan(feature)

    dialog = _dialog(qtbot, lambda: SlowPlan(settings=StoreSettings(endpoint=hub.url)))
    asked: list[str] = []
    dialog.confirm = lambda title, _text: asked.append(title) is None
    dialog.show()
    dialog.select("train")
    assert dialog.download()
    assert dialog.runner.running and dialog._action == "plan"
    dialog.close()  # while "Checking what needs to be downloaded…"
    assert not dialog.isVisible() and not dialog.runner.running
    qtbot.wait(500)  # the plan's result, queued as the dialog closed, would arrive now
    assert asked == [], "a closed dialog asked to download"
    assert not dialog.runner.running and hub.bytes_served() == 0


def test_a_stopped_runner_drops_its_workers_late_result(qtbot: QtBot) -> None:
    import time

    from spdesk.gui.workers import TaskRunner

    runner = TaskRunner()
    heard: list[str] = []
    runner.succeeded.connect(lambda result: heard.append(f"succeeded {result}"))
    runner.failed.connect(lambda text: heard.append(f"failed {text}"))
    runner.finished.connect(lambda: heard.append("finished"))

    def task(_on_event: Any, _cancel: Any) -> str:
        time.sleep(0.2)  # ends on its own, whatever the cancel token says
        return "late"

    runner.start(task)
    assert runner.stop()
    assert heard == ["finished"] and not runner.running
    qtbot.wait(200)  # the worker's queued result is delivered now, to be dropped
    assert heard == ["finished"]
    runner.start(lambda _on_event, _cancel: "next")  # a later task is heard as before
    qtbot.waitUntil(lambda: heard[-1] == "finished" and len(heard) == 3, timeout=5_000)
    assert heard == ["finished", "succeeded next", "finished"]


def test_verify_that_deletes_a_damaged_file_updates_the_row(
    qtbot: QtBot, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.confirm = lambda _title, _text: True
    dialog.select("train")
    assert dialog.download()
    qtbot.waitUntil(
        lambda: dialog.statuses["train"].present and not dialog.runner.running, timeout=30_000
    )
    assert "Installed" in _cell(dialog, 0, 2)
    weights = next(Path(dialog.statuses["train"].folder).rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # a bit flipped on disk
    weights.write_bytes(bytes(data))
    dialog.select("train")
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.verify()
    assert shown and "does not match" in shown[0]
    qtbot.waitUntil(lambda: not dialog.runner.running and not dialog.statuses["train"].present)
    assert not weights.exists()
    assert "Installed" not in _cell(dialog, 0, 2), "the row still says the model is installed"
    assert not dialog.verify_button.isEnabled() and not dialog.remove_button.isEnabled()


def test_close_asks_before_stopping_a_download_and_stop_says_what_it_stops(
    qtbot: QtBot, hub: HubServer
) -> None:
    dialog = _dialog(qtbot, lambda: PausingStore(settings=StoreSettings(endpoint=hub.url)))
    assert dialog.cancel_button.text() == "Stop download" and not dialog.cancel_button.isEnabled()
    assert dialog.close_button.isEnabled()
    asked: list[str] = []
    answer = [True]

    def confirm(title: str, _text: str) -> bool:
        asked.append(title)
        return answer[0]

    dialog.confirm = confirm
    dialog.select("train")
    dialog.download()
    qtbot.waitUntil(lambda: dialog.runner.paused, timeout=30_000)
    asked.clear()
    answer[0] = False
    dialog.show()
    dialog.close_button.click()  # as Esc: asks, and No keeps the download
    assert asked == ["Stop the download?"] and dialog.isVisible() and dialog.runner.running
    answer[0] = True
    dialog.close_button.click()
    assert not dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
