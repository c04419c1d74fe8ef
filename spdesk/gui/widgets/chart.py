"""A small line chart drawn with QPainter (QtCharts is not part of PySide6-Essentials)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

LABEL_INSET = 8  # the y labels' distance from the chart's rounded frame


@dataclass
class Series:
    name: str
    colour: str
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False


class LineChart(QWidget):
    """Several named series over a shared x axis, with a legend and min/max y labels."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, Series] = {}
        self.empty_text = "No data yet"  # shown until the first point: say when it comes
        self.setMinimumSize(260, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # Painted: a screen reader found a nameless, empty graphic. Its title names it, and
        # its description says what it would show, or each line's last point.
        self.setAccessibleName(title)
        self._describe()

    def add_series(self, name: str, colour: str, *, dashed: bool = False) -> None:
        self.series[name] = Series(name, colour, dashed=dashed)

    def append(self, name: str, x: float, y: float) -> None:
        self.series[name].points.append((x, y))
        self._describe()
        self.update()

    def set_empty_text(self, text: str) -> None:
        if text != self.empty_text:
            self.empty_text = text
            self._describe()
            self.update()

    def clear(self) -> None:
        for series in self.series.values():
            series.points.clear()
        self._describe()
        self.update()

    def _describe(self) -> None:
        last = [
            f"{series.name}: {series.points[-1][1]:.3g} at {series.points[-1][0]:g}"
            for series in self.series.values()
            if series.points
        ]
        self.setAccessibleDescription("; ".join(last) if last else self.empty_text)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#ffffff"))
        painter.setPen(QPen(QColor("#e3e6eb")))
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        painter.setPen(QColor("#374151"))
        painter.drawText(
            QRectF(12, 6, self.width() - 24, 20), Qt.AlignmentFlag.AlignLeft, self.title
        )
        # The legend goes beside the title when both fit, else on its own line below it.
        title_width = painter.fontMetrics().horizontalAdvance(self.title) + 36
        below = title_width + self._legend_width(painter) > self.width() - 16
        top = 50 if below else 32
        plot = QRectF(60, top, self.width() - 76, self.height() - top - 30)
        self._draw_legend(painter, plot, 34 if below else 16)
        points = [p for s in self.series.values() for p in s.points]
        if not points:  # when the first point comes: as the muted labels, 4.8:1 (was 2.5:1)
            painter.setPen(QColor("#6b7280"))
            painter.drawText(
                plot, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_text
            )
            return
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = (min(xs), max(xs)) if max(xs) > min(xs) else (0.0, max(max(xs), 1.0))
        y0, y1 = min(ys), max(ys)
        if y1 - y0 < 1e-12:
            y0, y1 = y0 - 0.5, y1 + 0.5
        labels = [f"{y1:.3g}", f"{y0:.3g}"]
        # Long values (-0.00604) get the room they need instead of running into the frame.
        label_width = max(painter.fontMetrics().horizontalAdvance(t) for t in labels)
        plot.setLeft(max(plot.left(), LABEL_INSET + label_width + 6))
        painter.setPen(QPen(QColor("#eef0f3")))
        for i in range(5):
            y = plot.top() + plot.height() * i / 4
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        painter.setPen(QColor("#6b7280"))
        for text, y in zip(labels, (plot.top(), plot.bottom()), strict=True):
            box = QRectF(LABEL_INSET, y - 8, plot.left() - LABEL_INSET - 4, 16)
            painter.drawText(box, Qt.AlignmentFlag.AlignRight, text)
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 4, 80, 16), Qt.AlignmentFlag.AlignLeft, f"{x0:g}"
        )
        painter.drawText(
            QRectF(plot.right() - 80, plot.bottom() + 4, 80, 16),
            Qt.AlignmentFlag.AlignRight,
            f"{x1:g}",
        )

        def to_screen(x: float, y: float) -> QPointF:
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        for series in self.series.values():
            if not series.points:
                continue
            pen = QPen(QColor(series.colour), 2)
            if series.dashed:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            path = QPainterPath(to_screen(*series.points[0]))
            for x, y in series.points[1:]:
                path.lineTo(to_screen(x, y))
            painter.drawPath(path)
            if len(series.points) == 1:
                painter.drawEllipse(to_screen(*series.points[0]), 2.5, 2.5)

    def _legend_width(self, painter: QPainter) -> int:
        metrics = painter.fontMetrics()
        return sum(metrics.horizontalAdvance(s.name) + 26 for s in self.series.values())

    def _draw_legend(self, painter: QPainter, plot: QRectF, y: float) -> None:
        x = plot.right()
        for series in reversed(list(self.series.values())):
            width = painter.fontMetrics().horizontalAdvance(series.name) + 26
            x -= width
            swatch = QPen(QColor(series.colour), 3)
            if series.dashed:  # as its line: not told apart by colour alone
                swatch.setDashPattern([1.5, 1.0])  # in pen widths: two dashes in 14 points
                swatch.setCapStyle(Qt.PenCapStyle.FlatCap)  # square caps filled the gaps
            painter.setPen(swatch)
            painter.drawLine(QPointF(x, y), QPointF(x + 14, y))
            painter.setPen(QColor("#4b5563"))
            painter.drawText(QPointF(x + 18, y + 4), series.name)
