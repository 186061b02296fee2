"""The live picture with the prediction drawn over it."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from station.ui.colors import text_color_on


@dataclass(frozen=True)
class Overlay:
    """What the view shows about the prediction on screen."""

    label: str
    confidence: float
    color: QColor
    top: list[tuple[str, float, QColor]]
    uncertain: bool
    latency_ms: float
    bin: str | None = None  # hands-free: where the item goes, shown big in the bin's colour
    bin_color: QColor | None = None
    item_state: str | None = None  # hands-free: e.g. "AUTO in 0.6 s — Esc holds", "WAITING FOR YOU"
    item_state_color: QColor | None = None
    held_image: QImage | None = None  # hands-free: the item being decided, when the live view no longer shows it


class VideoView(QWidget):
    """Paints the frame scaled to fit, the model's crop square, the prediction, banners and flashes."""

    def __init__(self) -> None:
        super().__init__()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(480, 320)
        self._image: QImage | None = None
        self._overlay: Overlay | None = None
        self._banner: tuple[str, QColor] | None = None
        self._notice: tuple[str, QColor] | None = None
        self._flash: tuple[str, QColor] | None = None
        self._frozen = False
        self._outline: tuple[list[tuple[float, float]], str, QColor] | None = None
        self.idle_text = "Waiting for the first prediction…"  # nothing decided on screen yet
        self._flash_timer = QTimer(self, singleShot=True)
        self._flash_timer.timeout.connect(self._clear_flash)

    # ---- state

    def set_image(self, image: QImage) -> None:
        self._image = image
        self.update()

    def set_overlay(self, overlay: Overlay | None) -> None:
        self._overlay = overlay
        self.update()

    def set_banner(self, text: str | None, color: QColor | None = None) -> None:
        """A persistent strip at the top: demo feed, camera lost."""
        self._banner = (text, color or QColor("#c0392b")) if text else None
        self.update()

    def set_notice(self, text: str | None, color: QColor | None = None) -> None:
        """A persistent strip at the bottom: storage problems."""
        self._notice = (text, color or QColor("#c0392b")) if text else None
        self.update()

    def set_outline(self, points: list[tuple[float, float]] | None, label: str = "",
                    color: QColor | None = None) -> None:
        """The item's outline (frame pixel coordinates) and its state, drawn over the picture; None clears it."""
        self._outline = (points, label, color or QColor("white")) if points else None
        self.update()

    def outline_label(self) -> str:
        return self._outline[1] if self._outline else ""

    def set_frozen(self, frozen: bool) -> None:
        self._frozen = frozen
        self.update()

    def flash(self, text: str, color: QColor, milliseconds: int = 1500) -> None:
        """A short message in the middle of the picture (what was saved, a hint)."""
        self._flash = (text, color)
        self._flash_timer.start(milliseconds)
        self.update()

    def flash_text(self) -> str:
        return self._flash[0] if self._flash else ""

    def notice_text(self) -> str:
        return self._notice[0] if self._notice else ""

    def banner_text(self) -> str:
        return self._banner[0] if self._banner else ""

    def _clear_flash(self) -> None:
        self._flash = None
        self.update()

    # ---- painting

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#111111"))
        scale = max(1.0, self.height() / 600)
        if self._image is not None and not self._image.isNull():
            self._paint_image(painter)
        else:
            self._text_box(painter, self.rect().toRectF(), "Opening the source…", QColor("#333333"), 16 * scale)
        banner_height = self._strip(painter, 0, *self._banner, scale) if self._banner else 0.0
        if self._overlay is not None:
            self._paint_overlay(painter, self._overlay, scale, banner_height)
        elif self._image is not None:  # frames arrive, the model has not answered yet
            self._pill(painter, QRectF(14 * scale, banner_height + 14 * scale, 330 * scale, 40 * scale),
                       self.idle_text, QColor(0, 0, 0, 170), 15 * scale)
        if self._frozen:
            self._pill(painter, QRectF(self.width() - 170 * scale, banner_height + 12 * scale, 158 * scale,
                                       36 * scale), "FROZEN (F)", QColor("#2980b9"), 15 * scale)
        bottom = float(self.height())
        if self._notice:
            bottom -= self._strip(painter, bottom, *self._notice, scale, from_bottom=True)
        if self._flash:
            # Along the bottom edge, not over the middle: the next item is already there to be judged.
            text, color = self._flash
            width, height = min(self.width() - 40, 620 * scale), 48 * scale
            box = QRectF((self.width() - width) / 2, bottom - height - 10 * scale, width, height)
            self._pill(painter, box, text, color, 18 * scale)
        painter.end()

    def _paint_image(self, painter: QPainter) -> None:
        assert self._image is not None
        image_size = self._image.size().toSizeF()
        target = image_size.scaled(self.size().toSizeF(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRectF((self.width() - target.width()) / 2, (self.height() - target.height()) / 2,
                      target.width(), target.height())
        painter.drawImage(rect, self._image)
        # The classifier sees the centre square only: show it so items are placed inside.
        side = min(rect.width(), rect.height())
        square = QRectF(rect.center().x() - side / 2, rect.center().y() - side / 2, side, side)
        painter.setPen(QPen(QColor(255, 255, 255, 110), 2, Qt.PenStyle.DashLine))
        painter.drawRect(square)
        if self._outline is not None:
            self._paint_outline(painter, rect, *self._outline)

    def _paint_outline(self, painter: QPainter, rect: QRectF, points: list[tuple[float, float]], label: str,
                       color: QColor) -> None:
        assert self._image is not None
        sx, sy = rect.width() / self._image.width(), rect.height() / self._image.height()
        polygon = QPolygonF([QPointF(rect.left() + (x + 0.5) * sx, rect.top() + (y + 0.5) * sy) for x, y in points])
        painter.setPen(QPen(color, 3))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPolygon(polygon)
        if label:
            box = polygon.boundingRect()
            scale = max(1.0, self.height() / 600)
            pill = QRectF(box.left(), max(rect.top(), box.top() - 30 * scale), 150 * scale, 26 * scale)
            self._pill(painter, pill, label, color, 13 * scale)

    def _paint_overlay(self, painter: QPainter, overlay: Overlay, scale: float, banner_height: float) -> None:
        margin = 14 * scale
        width = 330 * scale
        top = margin + banner_height
        box = QRectF(margin, top, width, 200 * scale)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 10, 10)

        title = QRectF(box.left() + 12 * scale, box.top() + 10 * scale, width - 24 * scale, 44 * scale)
        painter.setBrush(overlay.color)
        painter.drawRoundedRect(title, 8, 8)
        painter.setPen(text_color_on(overlay.color))
        painter.setFont(self._font(24 * scale, bold=True))
        painter.drawText(title.adjusted(10 * scale, 0, -10 * scale, 0),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, overlay.label.upper())
        painter.setFont(self._font(16 * scale, bold=True))
        painter.drawText(title.adjusted(10 * scale, 0, -10 * scale, 0),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{overlay.confidence:.0%}")

        bar = QRectF(title.left(), title.bottom() + 8 * scale, title.width(), 10 * scale)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 50))
        painter.drawRoundedRect(bar, 4, 4)
        painter.setBrush(QColor("#e67e22") if overlay.uncertain else overlay.color.lighter(130))
        painter.drawRoundedRect(QRectF(bar.left(), bar.top(), bar.width() * overlay.confidence, bar.height()), 4, 4)

        y = bar.bottom() + 10 * scale
        if overlay.uncertain:
            painter.setPen(QColor("#f39c12"))
            painter.setFont(self._font(14 * scale, bold=True))
            painter.drawText(QRectF(bar.left(), y, bar.width(), 22 * scale), Qt.AlignmentFlag.AlignLeft,
                             "UNCERTAIN — please check")
        y += 24 * scale
        painter.setFont(self._font(13 * scale))
        for name, probability, color in overlay.top:
            row = QRectF(bar.left(), y, bar.width(), 20 * scale)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRect(QRectF(row.left(), row.top() + 4 * scale, 12 * scale, 12 * scale))
            painter.setPen(QColor("white"))
            painter.drawText(row.adjusted(20 * scale, 0, 0, 0), Qt.AlignmentFlag.AlignLeft, name)
            painter.drawText(row, Qt.AlignmentFlag.AlignRight, f"{probability:.1%}")
            y += 22 * scale
        if overlay.bin is not None:
            rect = QRectF(margin, box.bottom() + 10 * scale, width, 90 * scale)
            self._paint_bin(painter, overlay, overlay.bin, rect, scale)

    def _paint_bin(self, painter: QPainter, overlay: Overlay, bin_name: str, rect: QRectF, scale: float) -> None:
        """Where the item goes, big enough to read from the line; under it what the station is doing with it."""
        color = overlay.bin_color or overlay.color
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(rect, 10, 10)
        painter.setPen(text_color_on(color))
        painter.setFont(self._font(40 * scale, bold=True))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"→ {bin_name.upper()}")
        if overlay.item_state:  # one line, or two with the reason the station waits
            font = self._font(14 * scale, bold=True)
            flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
            needed = QFontMetrics(font).boundingRect(0, 0, int(rect.width() - 20 * scale), 10_000, flags,
                                                     overlay.item_state).height()
            state = QRectF(rect.left(), rect.bottom() + 8 * scale, rect.width(), max(34 * scale, needed + 12 * scale))
            self._pill(painter, state, overlay.item_state, overlay.item_state_color or QColor("#2980b9"), 14 * scale)
            if overlay.held_image is not None and not overlay.held_image.isNull():
                self._paint_held(painter, overlay.held_image, state.bottom() + 8 * scale, rect, scale)

    def _paint_held(self, painter: QPainter, image: QImage, top: float, column: QRectF, scale: float) -> None:
        """The settled frame of the item being decided, under its state, when the live picture shows another."""
        caption = QRectF(column.left(), top, column.width(), 22 * scale)
        top = caption.bottom() + 4 * scale
        height = min(column.width() * image.height() / max(1, image.width()), self.height() - top - 40 * scale)
        if height < 40 * scale:
            return
        painter.setPen(QColor("white"))
        painter.setFont(self._font(12 * scale, bold=True))
        painter.drawText(caption, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, "You are deciding:")
        frame = QRectF(column.left(), top, height * image.width() / max(1, image.height()), height)
        painter.drawImage(frame, image)
        painter.setPen(QPen(QColor("white"), 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(frame)

    def _strip(self, painter: QPainter, y: float, text: str, color: QColor, scale: float,
               from_bottom: bool = False) -> float:
        """A full-width strip at ``y`` (its bottom edge when ``from_bottom``), as many lines tall as the text
        needs at this width; returns its height."""
        font = self._font(15 * scale, bold=True)
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        inner_width = max(1, self.width() - 24)
        needed = QFontMetrics(font).boundingRect(0, 0, inner_width, 10_000, flags, text).height()
        height = max(40 * scale, needed + 14 * scale)
        rect = QRectF(0, y - height if from_bottom else y, self.width(), height)
        painter.fillRect(rect, color)
        painter.setPen(text_color_on(color))
        painter.setFont(font)
        painter.drawText(rect.adjusted(12, 0, -12, 0), flags, text)
        return height

    def _pill(self, painter: QPainter, rect: QRectF, text: str, color: QColor, size: float) -> None:
        radius = min(rect.height(), 40.0) / 2  # a tall (two-line) pill keeps the one-line pill's round ends
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawRoundedRect(rect, radius, radius)
        painter.setPen(text_color_on(color))
        painter.setFont(self._font(size, bold=True))
        painter.drawText(rect.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def _text_box(self, painter: QPainter, rect: QRectF, text: str, color: QColor, size: float) -> None:
        painter.setPen(QColor("#aaaaaa"))
        painter.setFont(self._font(size))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    @staticmethod
    def _font(pixel_size: float, bold: bool = False) -> QFont:
        font = QFont()
        font.setPixelSize(max(8, round(pixel_size)))
        font.setBold(bold)
        return font
