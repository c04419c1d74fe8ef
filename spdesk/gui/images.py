"""Pictures for the views: numpy RGB arrays as Qt pixmaps, and a tile that scales one to fit."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from spdesk.core.formats import IMAGE_SUFFIXES


def photo_file_filter(*, all_files: bool = True) -> str:
    """A file dialog's filter for every suffix spdesk reads (the cameras' .hif, .jfif and
    .gif too), in both cases for file systems that match names exactly."""
    patterns = sorted({f"*{s}" for s in IMAGE_SUFFIXES} | {f"*{s.upper()}" for s in IMAGE_SUFFIXES})
    return f"Images ({' '.join(patterns)})" + (";;All files (*)" if all_files else "")


def to_pixmap(image: np.ndarray) -> QPixmap:
    """A uint8 (H, W, 3) RGB array as a QPixmap (the pixels are copied)."""
    pixels = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    height, width = pixels.shape[:2]
    qimage = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


class ImageTile(QFrame):
    """A captioned picture that keeps its aspect ratio as the tile is resized."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Tile")
        self._pixmap: QPixmap | None = None
        self.caption = QLabel(caption)
        self.caption.setObjectName("TileCaption")
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(QSize(120, 90))
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.picture.setObjectName("TilePicture")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(4)
        layout.addWidget(self.caption)
        layout.addWidget(self.picture, 1)
        self.clear()

    def set_caption(self, caption: str) -> None:
        self.caption.setText(caption)
        self._name_picture()

    def _name_picture(self) -> None:
        """Screen readers name a picture by its caption (a picture alone is announced as a
        bare "graphic"), with what the tile says in its place while it has none."""
        said = self.picture.text()
        name = self.caption.text() + (f": {said}" if said else "")
        if name != self.picture.accessibleName():  # each resize comes here: no news to tell
            self.picture.setAccessibleName(name)

    def set_image(self, image: np.ndarray | None) -> None:
        if image is None:
            self.clear()
            return
        self._pixmap = to_pixmap(image)
        self._rescale()

    def clear(self, text: str = "") -> None:
        self._pixmap = None
        self.picture.setPixmap(QPixmap())
        self.picture.setText(text)
        self._name_picture()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:  # keep the placeholder text clear() set (a pixmap erases it)
            return
        self.picture.setText("")
        self._name_picture()
        self.picture.setPixmap(
            self._pixmap.scaled(
                self.picture.size(),
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
