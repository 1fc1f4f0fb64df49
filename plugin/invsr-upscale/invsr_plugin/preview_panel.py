"""The dialog's Preview: where on the layer (a thumbnail to click, drag or move with the arrow keys), and
that area before and after (split_view.py): a plain enlargement and the worker's upscale of it, refreshed
when a setting changes.

What is shown and the background jobs are preview.py's; this module is the GTK and GIMP side of it.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import Gdk, GdkPixbuf, Gegl, Gimp, GLib, Gtk  # noqa: E402

from . import flow, preview  # noqa: E402
from .errors import PluginError  # noqa: E402
from .preview import DISPLAY, Area  # noqa: E402
from .split_view import FOCUS, SplitView  # noqa: E402

THUMBNAIL = 160  # the largest side of the "where" thumbnail
SETTINGS = ("size-by", "scale", "pixels", "output", "color-fix", "steps", "seed", "tile", "server")
QUIET_MS = 400  # a change refreshes the preview after this long without another (typing a number)


class PreviewPanel:
    """The preview's widgets, shown while the dialog's Preview box is ticked."""

    def __init__(self, config, layer, options_of, on_worker_up=None, on_timed=None):
        """`options_of(config)` gives the run's flow.Options for the dialog's values (or raises PluginError);
        `on_worker_up()` is called when a preview has come back, the worker answering (perhaps started for it),
        and `on_timed(report)` with the worker's report of each preview made (its timing)."""
        self.config, self.layer, self.options_of = config, layer, options_of
        self.on_worker_up, self.on_timed = on_worker_up, on_timed
        self.worker_up = False  # told on_worker_up since the last failure
        non_empty, x, y, width, height = layer.mask_intersect()
        self.region = Area(x, y, width, height)  # the layer, or the selection's part of it
        self.centre = self.region.centre
        self.crop: preview.Crop | None = None
        self.pending = 0  # the GLib source of a refresh waiting for quiet
        self.jobs = preview.PreviewJobs(GLib.idle_add, flow.connect, self._show)
        self.widget = self._build()
        self.watched = [config.connect(f"notify::{name}", self._changed) for name in (*SETTINGS, "preview")]

    def close(self) -> None:
        self.jobs.close()
        for handler in self.watched:
            self.config.disconnect(handler)
        if self.pending:
            GLib.source_remove(self.pending)

    def start(self) -> None:
        """Once the dialog is built: show or hide, and make the first preview when shown."""
        self._changed()

    # --- widgets ---------------------------------------------------------------------------------------

    def _build(self) -> Gtk.Widget:
        scale = min(1.0, THUMBNAIL / max(self.layer.get_width(), self.layer.get_height()))
        width, height = max(1, round(self.layer.get_width() * scale)), max(1, round(self.layer.get_height() * scale))
        self.thumbnail = self.layer.get_thumbnail(width, height, Gimp.PixbufTransparency.SMALL_CHECKS)
        self.thumbnail_scale = self.thumbnail.get_width() / self.layer.get_width()
        self.where_image = Gtk.Image.new_from_pixbuf(self.thumbnail)
        self.where = Gtk.EventBox(can_focus=True, halign=Gtk.Align.START, valign=Gtk.Align.START)
        self.where.add(self.where_image)
        self.where.add_events(Gdk.EventMask.BUTTON_PRESS_MASK | Gdk.EventMask.BUTTON1_MOTION_MASK)
        self.where.connect("button-press-event", self._pointed)
        self.where.connect("motion-notify-event", self._pointed)
        self.where.connect("key-press-event", self._key)
        for signal in ("focus-in-event", "focus-out-event"):  # the frame that shows where the arrow keys act
            self.where.connect(signal, lambda *_: self._draw_where() or False)
        self.where.set_tooltip_text("Click or drag to choose the area shown; the arrow keys move it too")
        self.split = SplitView(DISPLAY)
        self.split_label = Gtk.Label(label="_Before | after: drag the line", use_underline=True, xalign=0.0)
        self.split_label.set_mnemonic_widget(self.split.widget)
        self.status = Gtk.Label(xalign=0.0, wrap=True, selectable=True, max_width_chars=36)
        where_label = Gtk.Label(label="Area: _move it with the mouse or the arrow keys", use_underline=True, xalign=0.0)
        where_label.set_mnemonic_widget(self.where)
        column = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        for widget in (where_label, self.where, self.split_label, self.split.widget, self.status):
            column.pack_start(widget, False, False, 0)
        column.set_no_show_all(True)  # shown and hidden with the Preview box, not by the dialog's show_all
        return column

    def _draw_where(self) -> None:
        """The thumbnail with the layer's part that may be shown (the selection's, outlined in white when it
        is not the whole layer) and the area shown now (in yellow on black). Drawn into a copy of the
        thumbnail's pixels: no cairo, which GIMP's Python may lack."""
        picture, k = self.thumbnail.copy(), self.thumbnail_scale
        region = self.region
        if (region.width, region.height) != (self.layer.get_width(), self.layer.get_height()):
            _frame(picture, region.x * k, region.y * k, region.width * k, region.height * k, 0xFFFFFFFF)
        if self.crop is not None:
            shown = self.crop.shown_source
            x, y, width, height = shown.x * k, shown.y * k, max(3.0, shown.width * k), max(3.0, shown.height * k)
            _frame(picture, x - 1, y - 1, width + 2, height + 2, 0x000000FF)
            _frame(picture, x, y, width, height, 0xFFD700FF)
        if self.where.has_focus():
            for inset in (0, 1):
                _frame(picture, inset, inset, picture.get_width() - 2 * inset, picture.get_height() - 2 * inset, FOCUS)
        self.where_image.set_from_pixbuf(picture)

    def _pointed(self, area, event) -> bool:
        if event.type == Gdk.EventType.BUTTON_PRESS and event.button != 1:
            return False
        area.grab_focus()
        k = self.thumbnail_scale
        self.centre = preview.moved(self.region, (event.x / k, event.y / k), 0, 0)
        self._changed()
        return True

    def _key(self, area, event) -> bool:
        steps = {Gdk.KEY_Left: (-1, 0), Gdk.KEY_Right: (1, 0), Gdk.KEY_Up: (0, -1), Gdk.KEY_Down: (0, 1)}
        if event.keyval not in steps:
            return False
        size = preview.MOVE_STEP * (4 if event.state & Gdk.ModifierType.SHIFT_MASK else 1)
        dx, dy = steps[event.keyval]
        self.centre = preview.moved(self.region, self.centre, dx * size, dy * size)
        self._changed()
        return True

    # --- refreshing ------------------------------------------------------------------------------------

    def _changed(self, *_) -> None:
        on = self.config.get_property("preview")
        for child in self.widget.get_children():
            child.show_all()
        self.widget.set_visible(on)
        if on:
            if self.pending:
                GLib.source_remove(self.pending)
            self.pending = GLib.timeout_add(QUIET_MS, self._refresh)

    def _refresh(self) -> bool:
        self.pending = 0
        try:
            options = self.options_of(self.config)
        except PluginError as error:
            self.status.set_text(f"No preview: {error}")
            return False
        self.crop = preview.crop_at(self.region, self.centre, options.scale, options.tile)
        self._draw_where()
        pixels, channels = self._read(self.crop.sent)
        same_size = options.output == "in-place" or options.scale == 1
        before = "the layer as it is" if same_size else "a plain enlargement"
        self.split_label.set_text_with_mnemonic(f"_Before ({before}) | after (InvSR): drag the line")
        self.split.show(self._plain_enlargement(pixels, channels), None)
        self.status.set_text("Preview: upscaling...")
        self.jobs.ask(preview.Request(self.crop, pixels, channels, options))
        return False  # as a GLib timeout: once

    def _read(self, area: Area) -> tuple[bytes, int]:
        """The area's pixels in 8-bit sRGB, as the screen shows them, with alpha when the layer has one."""
        channels = 4 if self.layer.has_alpha() else 3
        encoding = "R'G'B'A u8" if channels == 4 else "R'G'B' u8"
        rect = Gegl.Rectangle.new(area.x, area.y, area.width, area.height)
        return bytes(self.layer.get_buffer().get(rect, 1.0, encoding, Gegl.AbyssPolicy.CLAMP)), channels

    def _plain_enlargement(self, pixels: bytes, channels: int) -> GdkPixbuf.Pixbuf:
        crop = self.crop
        source = _pixbuf(pixels, crop.sent.width, crop.sent.height, channels)
        width = max(1, round(crop.sent.width * crop.scale))
        height = max(1, round(crop.sent.height * crop.scale))
        enlarged = source.scale_simple(width, height, GdkPixbuf.InterpType.HYPER)
        shown = crop.shown
        return enlarged.new_subpixbuf(shown.x, shown.y, shown.width, shown.height)

    def _show(self, outcome: preview.Outcome) -> None:
        self.status.set_text(outcome.text)
        if outcome.pixels is not None and not self.worker_up and self.on_worker_up is not None:
            self.on_worker_up()
        self.worker_up = outcome.pixels is not None or (self.worker_up and outcome.busy)
        if outcome.report is not None and self.on_timed is not None:
            self.on_timed(outcome.report)
        if outcome.pixels is not None:
            shown = outcome.request.crop.shown
            after = _pixbuf(outcome.pixels, shown.width, shown.height, outcome.request.channels)
            self.split.show(self.split.before, after)


def _frame(picture: GdkPixbuf.Pixbuf, x: float, y: float, width: float, height: float, rgba: int) -> None:
    """A one-pixel rectangle drawn into `picture`, clipped to it."""
    left, top = max(0, round(x)), max(0, round(y))
    right = min(picture.get_width(), round(x + width))
    bottom = min(picture.get_height(), round(y + height))
    if right - left < 1 or bottom - top < 1:
        return
    for sx, sy, sw, sh in (
        (left, top, right - left, 1),
        (left, bottom - 1, right - left, 1),
        (left, top, 1, bottom - top),
        (right - 1, top, 1, bottom - top),
    ):
        picture.new_subpixbuf(sx, sy, sw, sh).fill(rgba)  # a sub-pixbuf shares its parent's pixels


def _pixbuf(pixels: bytes, width: int, height: int, channels: int) -> GdkPixbuf.Pixbuf:
    return GdkPixbuf.Pixbuf.new_from_bytes(
        GLib.Bytes.new(pixels), GdkPixbuf.Colorspace.RGB, channels == 4, 8, width, height, width * channels
    )
