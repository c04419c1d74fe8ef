"""The model manager against the local test hub: consent, progress, cancel, resume, verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, Qt
from pytestqt.qtbot import QtBot

pytest.importorskip("spdesk.core.models.store", reason="the model store has not landed yet")
pytest.importorskip("hub_server", reason="the test hub server has not landed yet")

from accessibility import mnemonic_letters
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


def test_the_hint_to_select_a_feature_shows_only_while_none_is(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """ "Select a feature…" stayed under a list with its first row selected."""
    dialog = _dialog(qtbot, lambda: ModelStore(root=tmp_path / "models"))
    assert dialog.selected_feature() == "train"
    assert not dialog.status_label.text().startswith("Select a feature")
    dialog.table.clearSelection()
    assert dialog.status_label.text().startswith("Select a feature to download")
    dialog.select("taesd")
    assert dialog.status_label.text() == ""


def test_a_dropped_connection_is_said_while_the_download_asks_again(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The bar stood still while a dropped connection was asked again, and nothing said why."""
    from spdesk.core.models.events import TransferRetrying

    dialog = _dialog(qtbot, lambda: ModelStore(root=tmp_path / "models"))
    unet = "unet/diffusion_pytorch_model.fp16.safetensors"
    dialog._on_event(TransferRetrying(unet, 2_000_000, 1_700_000_000, "ReadTimeout", 1.0, 2, 5))
    said = dialog.status_label.text()
    assert said.startswith("The connection stopped at 2.0 MB of 1.7 GB (unet/"), said
    assert "asking again from there in 1 s (2 of 5 tries)" in said and "Stop download" in said


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


def test_download_progress_names_the_file_by_its_path_in_the_repository(
    qtbot: QtBot, hub: HubServer
) -> None:
    """It said "(diffusion_pytorch_model.fp16.safetensors)" for the UNet, the VAE and the
    text encoder alike."""
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    name = "unet/diffusion_pytorch_model.fp16.safetensors"
    dialog._on_event(DownloadProgress(name, 10, 100, 500, 2000, 100.0, 15.0))
    assert dialog.status_label.text().endswith(f"({name})")


def test_verify_lists_the_damage_of_a_download_damaged_since_as_the_command_line_does(
    qtbot: QtBot, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download whose weights were cut short since is not installed any more: Verify was
    off (or said "Not installed: nothing to verify"), where `spdesk models verify` lists the
    damage and deletes the bad file so that the next download fetches it again."""
    from PySide6.QtWidgets import QMessageBox

    store = ModelStore(settings=StoreSettings(endpoint=hub.url))
    folder = store.download("train")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # cut short
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warned.append(text))
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.select("train")
    assert not dialog.statuses["train"].present
    assert dialog.verify_button.isEnabled()
    with qtbot.waitSignal(dialog.runner.finished, timeout=10_000):
        assert dialog.verify()
    said = dialog.status_label.text()
    assert "nothing to verify" not in said
    assert "diffusion_pytorch_model.safetensors has the wrong size" in said, said
    assert warned and "has the wrong size" in warned[0] and "Download again" in warned[0]
    assert not weights.exists()  # deleted, as the command line's verify deletes it


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


def test_an_import_verify_finds_damaged_is_shown_as_such_with_how_to_repair_it(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row said "Installed (imported)" and Verify said "Download again to repair" of a
    model the store cannot download: it is kept, no longer used, and must be imported again."""
    from PySide6.QtWidgets import QMessageBox
    from tiny_sd import save_tiny_taesd

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    taesd = save_tiny_taesd(tmp_path / "taesd.safetensors", 4)
    weights = ModelStore().import_path(taesd).folder / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit changed on disk
    weights.write_bytes(bytes(data))
    dialog = _dialog(qtbot, ModelStore)
    dialog.select("taesd")
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.verify()
    assert shown and "Remove it, then Import" in shown[0] and "Download" not in shown[0]
    qtbot.waitUntil(lambda: bool(dialog.statuses["taesd"].repair), timeout=30_000)
    qtbot.waitUntil(lambda: not dialog.runner.running)
    row = next(r for r in range(dialog.table.rowCount()) if "damaged" in _cell(dialog, r, 2))
    state = dialog.table.item(row, 2)
    assert state is not None and "Import" in state.toolTip()
    assert "verified" not in state.text() and "Installed" not in state.text()


def _import_action(dialog: ModelManagerDialog, word: str) -> Any:
    menu = dialog.import_button.menu()
    assert menu is not None, "the Import button offers no choice"
    (action,) = [a for a in menu.actions() if word in a.text()]
    return action


def test_import_offers_a_folder_or_a_weights_file_and_cancel_means_cancel(
    qtbot: QtBot, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder chooser came first and a file chooser only after Cancel; TAESD was never
    named."""
    from PySide6.QtWidgets import QFileDialog, QMessageBox
    from tiny_sd import save_tiny_sd, save_tiny_taesd

    folder = save_tiny_sd(tmp_path / "my-sd15")
    taesd = save_tiny_taesd(tmp_path / "taesd.safetensors")
    asked: list[str] = []
    answers = {"folder": "", "file": ""}
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))

    def choose_folder(_parent: Any, title: str, *_args: Any) -> str:
        asked.append(f"folder: {title}")
        return answers["folder"]

    def choose_file(_parent: Any, title: str, *_args: Any) -> tuple[str, str]:
        asked.append(f"file: {title}")
        return answers["file"], ""

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", choose_folder)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", choose_file)
    dialog = _dialog(qtbot, ModelStore)
    folder_action = _import_action(dialog, "Folder")
    file_action = _import_action(dialog, "Weights file")
    assert "diffusers" in folder_action.text() and "TAESD" in file_action.text()
    folder_action.trigger()
    file_action.trigger()
    assert len(asked) == 2 and asked[0].startswith("folder: ") and asked[1].startswith("file: ")
    assert not dialog.runner.running, "a cancelled chooser started an import"
    answers.update(folder=str(folder), file=str(taesd))
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        folder_action.trigger()
    qtbot.waitUntil(lambda: dialog.statuses["preview"].present, timeout=30_000)
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    with qtbot.waitSignal(dialog.runner.finished, timeout=60_000):
        file_action.trigger()
    qtbot.waitUntil(lambda: dialog.statuses["taesd"].present, timeout=30_000)
    assert len(asked) == 4 and not shown
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
    plan = SimpleNamespace(
        to_fetch_bytes=2_100_000_000, target=target, free_bytes=9 * 10**10, enough_space=True
    )
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
        def plan(self, feature: Any, cancel: Any = None) -> Any:
            time.sleep(0.5)  # a slow hub listing
            return super().plan(feature, cancel)

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


def test_stop_while_the_hub_does_not_answer_the_listing_ends_it_at_once(
    qtbot: QtBot, hub: HubServer
) -> None:
    """The dialog listed without the cancel token: "Cancelling…" stayed while huggingface_hub
    retried (a 500 for some 23 s; a stalled network for good). Meanwhile it said only
    "Checking what needs to be downloaded…": each retry is said now."""
    import time

    hub.fail_listing(500)
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.show()
    dialog.select("train")
    assert dialog.download()
    assert dialog.runner.running and dialog._action == "plan"
    qtbot.waitUntil(lambda: "again in" in dialog.status_label.text(), timeout=10_000)
    said = dialog.status_label.text()
    assert said.startswith(f"Asking {hub.url} again in ") and "(retry 1 of " in said, said
    assert "it answered with error 500" in said and "“Stop download” ends it" in said
    assert dialog.cancel_button.isEnabled() and dialog.cancel_button.text() == "Stop download"
    started = time.monotonic()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=5_000)
    assert time.monotonic() - started < 3 and hub.bytes_served() == 0
    # Nothing was fetched: it said "The part already fetched is kept: Download resumes it."
    said = dialog.status_label.text()
    assert "nothing was fetched" in said and "already fetched is kept" not in said, said


def test_an_import_fetching_its_configs_from_a_failing_hub_says_so_and_stop_ends_it(
    qtbot: QtBot, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing a single-file checkpoint fetches its configs from the hub: with a failing hub
    the dialog said only "Importing …" for some 25 s, and Stop was off."""
    import time

    from spdesk.core.models import importing

    checkpoint = tmp_path / "my-sd15.safetensors"
    checkpoint.write_bytes(b"not read: its kind is patched below")
    monkeypatch.setattr(importing, "checkpoint_keys", lambda _path: {})
    monkeypatch.setattr(importing, "sd15_checkpoint_kind", lambda _keys, _name: "preview")
    hub.fail_listing(500)
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.show()
    assert dialog.import_model(checkpoint)
    qtbot.waitUntil(lambda: "again in" in dialog.status_label.text(), timeout=10_000)
    said = dialog.status_label.text()
    assert said.startswith(f"Asking {hub.url} again in ") and "error 500" in said, said
    assert dialog.cancel_button.isEnabled()
    started = time.monotonic()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=5_000)
    assert time.monotonic() - started < 3
    assert dialog.status_label.text() == "Import stopped: nothing was imported."
    assert not dialog.cancel_button.isEnabled()


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


def test_a_task_a_closed_window_could_not_wait_for_is_waited_for_at_exit(qtbot: QtBot) -> None:
    """A stop that timed out left the thread running; Qt aborted when the app exited
    ("QThread: Destroyed while thread is still running", exit 134)."""
    import threading

    from spdesk.gui.workers import TaskRunner, wait_for_live_threads

    release = threading.Event()
    runner = TaskRunner()
    heard: list[str] = []
    runner.succeeded.connect(lambda result: heard.append(f"succeeded {result}"))
    runner.finished.connect(lambda: heard.append("finished"))

    def ignores_its_cancel(_on_event: Any, _cancel: Any) -> str:
        release.wait(10)
        return "late"

    runner.start(ignores_its_cancel)
    thread, worker = runner._thread, runner._worker
    assert not runner.stop(timeout_ms=50)
    # Let go, not waited for: the closing window is not frozen, and never hears from it again.
    assert not runner.running and heard == ["finished"]
    assert not wait_for_live_threads(100), "still running: the app ends the process instead"
    threading.Timer(0.2, release.set).start()
    assert wait_for_live_threads(5_000)
    # Deleted by the event loop, not left to the garbage collector: destroyed at a random
    # moment on the GUI thread, a let-go thread's objects froze the app (the suite hung: their
    # disconnects waited for the GIL a thumbnail thread held while it waited for Qt's lock).
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(worker) and not shiboken6.isValid(thread)
    qtbot.wait(200)  # the task's result, queued for the GUI thread, is dropped
    assert heard == ["finished"]
    runner.start(lambda _on_event, _cancel: "next")  # the runner is free for the next task
    qtbot.waitUntil(lambda: len(heard) == 3, timeout=5_000)
    assert heard == ["finished", "succeeded next", "finished"]


def test_closing_during_a_download_stalled_mid_file_does_not_freeze_the_window(
    qtbot: QtBot, hub: HubServer
) -> None:
    """Close waited for the stalled read to time out (up to 30 s) with the dialog frozen."""
    import time

    from spdesk.gui.workers import wait_for_live_threads

    for path in (
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ):
        hub.trickle(path, piece=8192, pause_s=5.0)  # a network that stalls between pieces
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    dialog.confirm = lambda _title, _text: True
    dialog.show()
    dialog.select("train")
    assert dialog.download()
    qtbot.waitUntil(lambda: dialog._action == "download" and hub.bytes_served() > 0, timeout=30_000)
    qtbot.wait(300)
    started = time.monotonic()
    dialog.close_button.click()
    assert time.monotonic() - started < 3, "the dialog froze until the read timed out"
    assert not dialog.isVisible() and not dialog.runner.running
    assert wait_for_live_threads(30_000), "the cancelled download did not end after its read"


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
    # What is left (its config) is what the next download reuses, and Remove deletes.
    assert _cell(dialog, 0, 2).startswith("Partly downloaded (")
    assert not dialog.verify_button.isEnabled() and dialog.remove_button.isEnabled()


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


# --- not enough space, and another models folder ------------------------------------------------
def _settings_store(hub: HubServer) -> Any:
    """A store as the app makes it (the saved settings, the folder included) on the test hub."""
    from dataclasses import replace

    from spdesk.core.models.settings import load_settings

    return lambda: ModelStore(settings=replace(load_settings(), endpoint=hub.url))


def test_without_room_the_dialog_says_so_and_offers_another_folder_instead_of_downloading(
    qtbot: QtBot, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It asked "680 kB will be downloaded… Free space there: 340 kB. Download now?", then
    failed with a hint naming commands."""
    import shutil

    from PySide6.QtWidgets import QFileDialog

    from spdesk.core.models import selection

    real = shutil.disk_usage
    monkeypatch.setattr(
        selection.shutil, "disk_usage", lambda path: real(path)._replace(free=50_000)
    )
    dialog = _dialog(qtbot, _settings_store(hub))
    asked: list[str] = []
    offered: list[tuple[str, str]] = []
    answer = [False]
    dialog.confirm = lambda _title, text: asked.append(text) is None
    dialog.offer = lambda _title, text, action: offered.append((text, action)) is None and answer[0]
    dialog.select("train")
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.download()
    qtbot.wait(50)
    assert not asked, "it asked to download onto a disk without room"
    ((text, action),) = offered
    assert action == "Change folder…"
    assert "50.0 kB is free" in text and str(dialog.root) in text and "Download now" not in text
    assert "spdesk models" not in text
    assert "Not enough space" in dialog.status_label.text()
    assert not dialog.runner.running and hub.bytes_served() == 0
    chooser: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda _p, title, *_a: chooser.append(title) or ""
    )
    answer[0] = True
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.download()
    qtbot.waitUntil(lambda: bool(chooser), timeout=5_000)  # Change folder… picks a folder
    assert hub.bytes_served() == 0 and not dialog.runner.running


def test_change_folder_moves_the_models_and_lists_them_from_there(
    qtbot: QtBot, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    from spdesk.core.models.settings import load_settings

    ModelStore(settings=StoreSettings(endpoint=hub.url)).download("train")
    dialog = _dialog(qtbot, _settings_store(hub))
    old = dialog.root
    assert old is not None and dialog.statuses["train"].present
    new = tmp_path / "bigger-disk" / "models"
    new.mkdir(parents=True)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a: str(new))
    asked: list[str] = []
    dialog.confirm = lambda _title, text: asked.append(text) is None
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        qtbot.mouseClick(dialog.change_folder_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.root == new and not dialog.runner.running, timeout=30_000)
    assert str(old) in asked[0] and str(new) in asked[0]
    assert load_settings().models_dir == str(new)
    assert Path(dialog.statuses["train"].folder).is_relative_to(new)
    assert str(new) in dialog.location_label.text() and not old.exists()
    assert "moved" in dialog.status_label.text()


def test_change_folder_to_an_unusable_folder_says_why_and_keeps_the_models(
    qtbot: QtBot, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from spdesk.core.models.settings import load_settings

    ModelStore(settings=StoreSettings(endpoint=hub.url)).download("train")
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: shown.append(text))
    dialog = _dialog(qtbot, _settings_store(hub))
    dialog.confirm = lambda _title, _text: True
    old, folder = dialog.root, dialog.statuses["train"].folder
    full = tmp_path / "not-empty"
    (full / "theirs").mkdir(parents=True)
    read_only = tmp_path / "read-only"
    real_open = os.open

    def refuse_writes(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(read_only)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_writes)
    for chosen, reason in ((full, "is not empty"), (read_only, "permission")):
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, c=chosen: str(c))
        with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
            assert dialog.change_folder()
        qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
        assert shown and reason in shown[-1], shown
        assert "Traceback" not in shown[-1] and "spdesk models" not in shown[-1]
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    assert dialog.root == old and dialog.statuses["train"].folder == folder
    assert Path(folder).is_dir() and load_settings().models_dir is None
    assert (full / "theirs").is_dir()


def test_moving_to_another_disk_shows_progress_and_stop_moves_nothing(
    qtbot: QtBot, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from PySide6.QtWidgets import QFileDialog

    from spdesk.core.models import store as store_module
    from spdesk.core.models.events import FolderMoveProgress
    from spdesk.core.models.settings import load_settings

    def cross_device(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "rename", cross_device)
    ModelStore(settings=StoreSettings(endpoint=hub.url)).download("train")
    settings_store = _settings_store(hub)

    class PausingMove(ModelStore):
        """Pauses its copy after the first file, as a slow disk would."""

        def relocate(self, new_root: Path, **kw: Any) -> Path:  # type: ignore[override]
            on_event, cancel = kw.pop("on_event"), kw["cancel"]

            def sink(event: Any) -> None:
                on_event(event)
                if isinstance(event, FolderMoveProgress):
                    cancel.pause()

            return super().relocate(new_root, on_event=sink, **kw)

    dialog = _dialog(qtbot, lambda: PausingMove(settings=settings_store().settings))
    dialog.confirm = lambda _title, _text: True
    old = dialog.root
    assert old is not None
    files = sorted(p for p in old.rglob("*") if p.is_file())
    new = tmp_path / "other-disk" / "models"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a: str(new))
    assert dialog.change_folder()
    qtbot.waitUntil(lambda: dialog.runner.paused, timeout=30_000)
    assert 0 < dialog.progress.value() < 1000
    assert "Moving" in dialog.status_label.text() and " of " in dialog.status_label.text()
    # the file by its path in the models folder: the UNet, the VAE and the text encoder share
    # a file name
    copied = dialog.status_label.text().rsplit("(", 1)[1].rstrip(")")
    assert "/" in copied and (old / copied).is_file(), copied
    assert dialog.cancel_button.isEnabled() and dialog.cancel_button.text() == "Stop moving"
    with qtbot.waitSignal(dialog.runner.cancelled, timeout=10_000):
        dialog.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.runner.running, timeout=10_000)
    assert "Nothing was moved" in dialog.status_label.text()
    assert sorted(p for p in old.rglob("*") if p.is_file()) == files and not new.exists()
    assert load_settings().models_dir is None and dialog.statuses["train"].present


def test_change_folder_is_off_while_the_models_dir_variable_chooses_it(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPDESK_MODELS_DIR", str(tmp_path / "chosen"))
    dialog = _dialog(qtbot, ModelStore)
    assert not dialog.change_folder_button.isEnabled()
    assert "SPDESK_MODELS_DIR" in dialog.change_folder_button.toolTip()
    assert "SPDESK_MODELS_DIR" in dialog.location_label.text()


# --- removing a partial download ------------------------------------------------------------------
def test_a_partly_downloaded_model_can_be_removed_and_the_question_says_how_much(
    qtbot: QtBot, hub: HubServer
) -> None:
    from spdesk.core.errors import Cancelled

    hub.trickle("vae/diffusion_pytorch_model.fp16.safetensors", piece=8192, pause_s=0.05)
    store = ModelStore(settings=StoreSettings(endpoint=hub.url))
    cancel = CancelToken()

    def stop_in_the_weights(event: Any) -> None:
        if isinstance(event, DownloadProgress) and event.file.endswith(".safetensors"):
            cancel.cancel()

    with pytest.raises(Cancelled):
        store.download("train", stop_in_the_weights, cancel)
    parts = list(store.folder_for("train").rglob("*.part"))
    assert parts
    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    partial = dialog.statuses["train"].partial_bytes
    assert partial > 0 and not dialog.statuses["train"].present
    dialog.select("train")
    assert dialog.remove_button.isEnabled(), "a partial download could not be removed"
    asked: list[str] = []
    dialog.confirm = lambda _title, text: asked.append(text) is None
    said: list[str] = []
    dialog.runner.succeeded.connect(lambda _r: said.append(dialog.status_label.text()))
    with qtbot.waitSignal(dialog.runner.finished, timeout=30_000):
        assert dialog.remove()
    qtbot.waitUntil(
        lambda: not dialog.runner.running and not dialog.statuses["train"].partial_bytes
    )
    from spdesk.gui.text import format_bytes

    assert "partly downloaded" in asked[0] and format_bytes(partial) in asked[0], asked
    assert said and said[0].startswith("Removed the partly downloaded files; "), said
    assert not any(p.exists() for p in parts)
    assert "Not installed" in _cell(dialog, 0, 2) and not dialog.remove_button.isEnabled()


def test_the_mode_notes_name_models_by_the_items_models_lists(qtbot: QtBot, hub: HubServer) -> None:
    """The main window's note for a missing encoder sends the user to an item of Models… by
    its name: written out twice, a rename in Models… would send them to no item (review)."""
    import re

    from spdesk.gui.widgets.options import NEEDED_MODELS

    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    items = {_cell(dialog, row, 0) for row in range(dialog.table.rowCount())}
    for note in NEEDED_MODELS.values():
        named = re.search(r"Models…, “(.+)”", note)
        assert named is not None and named.group(1) in items, (note, items)


def test_the_preview_names_the_models_item_to_get_and_its_size(
    qtbot: QtBot, hub: HubServer
) -> None:
    """The preview's note named its model and size in words of its own ("Stable Diffusion
    1.5", "2.1 GB"), not by the item Models… lists it as (review)."""
    from PySide6.QtCore import Qt

    from spdesk.gui.preview_panel import MODEL_FEATURE, MODEL_NEEDED

    dialog = _dialog(qtbot, lambda: ModelStore(settings=StoreSettings(endpoint=hub.url)))
    rows = {
        dialog.table.item(row, 0).data(Qt.ItemDataRole.UserRole): row
        for row in range(dialog.table.rowCount())
    }
    for mode, note in MODEL_NEEDED.items():
        row = rows[MODEL_FEATURE[mode]]
        item, model, size = (_cell(dialog, row, column) for column in (0, 1, 3))
        assert f"the {model} model ({size}, downloaded once): open Models… and get “{item}”" in note


def test_the_list_and_the_progress_bar_are_named_for_screen_readers(qtbot: QtBot) -> None:
    """A screen reader said a bare "table" and "progress bar" (accessibility audit)."""
    dialog = _dialog(qtbot, ModelStore)
    assert dialog.table.accessibleName() == "Features and their models"
    assert dialog.progress.accessibleName() == "Progress of the download or move"


def test_download_has_a_letter_of_its_own(qtbot: QtBot) -> None:
    """ "Download…" had no Alt letter (accessibility audit): Alt+D now, used once."""
    dialog = _dialog(qtbot, ModelStore)
    letters = mnemonic_letters(dialog)
    assert letters.get("d") == [dialog.download_button.text()], letters
    assert not {key: texts for key, texts in letters.items() if len(texts) > 1}, letters


def test_tab_leaves_the_list_for_the_buttons(qtbot: QtBot) -> None:
    """Tab moved from cell to cell of the list and wrapped round: a keyboard user never
    reached Download, Verify, Remove or Close (accessibility audit)."""
    from PySide6.QtWidgets import QApplication

    dialog = _dialog(qtbot, ModelStore)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow)
    dialog.table.setFocus()
    reached = set()
    for _ in range(8):
        focused = QApplication.focusWidget()
        assert focused is not None
        qtbot.keyClick(focused, Qt.Key.Key_Tab)
        reached.add(QApplication.focusWidget())
    assert dialog.close_button in reached
