"""The photo queue: many rows at once, each path on its own row, duplicates skipped."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from spdesk.gui.widgets.queue import PhotoQueue, RowStatus


def test_thousands_of_photos_land_in_order_and_each_row_follows_its_photo(
    qtbot: QtBot, tmp_path: Path
) -> None:
    queue = PhotoQueue()
    qtbot.addWidget(queue)
    paths = [tmp_path / f"photo_{i:04d}.jpg" for i in range(1500)]
    assert queue.add_photos(paths[:1000]) == 1000
    assert queue.add_photos(paths) == 500  # the first thousand are already queued
    assert queue.rowCount() == 1500 and queue.paths() == [p.resolve() for p in paths]
    queue.set_status(paths[1234], RowStatus.FAILED, "Cannot read it")
    item = queue.item(1234, 1)
    assert item is not None and item.text() == "Failed: Cannot read it"
    assert queue.item(1234, 0).text() == "photo_1234.jpg"  # type: ignore[union-attr]
    assert queue.retry_button(paths[1234]) is not None
    assert queue.count_by_status()[RowStatus.WAITING] == 1499
    queue.clear_photos()
    assert queue.rowCount() == 0
