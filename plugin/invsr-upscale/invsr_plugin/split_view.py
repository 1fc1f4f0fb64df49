"""Before and after in one picture, as photographers know it from other upscalers: the plain enlargement
left of a divider, InvSR's upscale right of it. The divider follows the mouse (click or drag) and the
arrow keys; the picture is framed while it has the keyboard's focus.

Drawn by copying pixels between GdkPixbufs: no cairo, which GIMP's Python may lack.
"""

from __future__ import annotations

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import Gdk, GdkPixbuf, Gtk  # noqa: E402

DIVIDER = 0xFFFFFFFF  # a white line, one pixel, with a dark one beside it: seen on any picture
SHADOW = 0x000000FF
FOCUS = 0x3584E4FF  # GTK's accent blue: the frame of a picture that has the focus
KEY_STEP = 0.05  # of the width, per arrow key press (Shift: four times)


class SplitView:
    def __init__(self, size: int):
        self.before: GdkPixbuf.Pixbuf | None = None
        self.after: GdkPixbuf.Pixbuf | None = None
        self.fraction = 0.5  # where the divider is, across the picture
        self.image = Gtk.Image()
        self.image.set_size_request(size, size)
        self.widget = Gtk.EventBox(can_focus=True)
        self.widget.add(self.image)
        self.widget.add_events(Gdk.EventMask.BUTTON_PRESS_MASK | Gdk.EventMask.BUTTON1_MOTION_MASK)
        self.widget.connect("button-press-event", self._pointed)
        self.widget.connect("motion-notify-event", self._pointed)
        self.widget.connect("key-press-event", self._key)
        for signal in ("focus-in-event", "focus-out-event"):
            self.widget.connect(signal, lambda *_: self._draw() and False)
        self.widget.set_tooltip_text("Drag, or use the arrow keys: before on the left, InvSR on the right")

    def show(self, before: GdkPixbuf.Pixbuf | None, after: GdkPixbuf.Pixbuf | None) -> None:
        self.before, self.after = before, after
        self._draw()

    def picture(self) -> GdkPixbuf.Pixbuf | None:
        """What is drawn: before, then after from the divider on, the divider, and the focus frame."""
        base = self.before or self.after
        if base is None:
            return None
        picture = base.copy()
        width, height = picture.get_width(), picture.get_height()
        if self.after is not None and self.before is not None and _same_size(self.before, self.after):
            x = min(width - 1, max(1, round(self.fraction * width)))
            self.after.copy_area(x, 0, width - x, height, picture, x, 0)
            picture.new_subpixbuf(x - 1, 0, 1, height).fill(SHADOW)
            picture.new_subpixbuf(x, 0, 1, height).fill(DIVIDER)
        if self.widget.has_focus():
            _frame(picture, FOCUS)
        return picture

    def _draw(self) -> bool:
        picture = self.picture()
        if picture is None:
            self.image.clear()
        else:
            self.image.set_from_pixbuf(picture)
        return True

    def _pointed(self, widget, event) -> bool:
        if event.type == Gdk.EventType.BUTTON_PRESS and event.button != 1:
            return False
        widget.grab_focus()
        base = self.before or self.after
        if base is not None:  # the picture sits centred in the image's allocation
            left = (self.image.get_allocated_width() - base.get_width()) / 2
            self.fraction = min(1.0, max(0.0, (event.x - left) / base.get_width()))
            self._draw()
        return True

    def _key(self, widget, event) -> bool:
        steps = {Gdk.KEY_Left: -1, Gdk.KEY_Right: 1}
        if event.keyval not in steps:
            return False
        step = KEY_STEP * (4 if event.state & Gdk.ModifierType.SHIFT_MASK else 1)
        self.fraction = min(1.0, max(0.0, self.fraction + steps[event.keyval] * step))
        self._draw()
        return True


def _same_size(a: GdkPixbuf.Pixbuf, b: GdkPixbuf.Pixbuf) -> bool:
    return (a.get_width(), a.get_height()) == (b.get_width(), b.get_height())


def _frame(picture: GdkPixbuf.Pixbuf, rgba: int, thickness: int = 2) -> None:
    """A frame along the picture's edges, drawn into it."""
    width, height = picture.get_width(), picture.get_height()
    t = min(thickness, width, height)
    for x, y, w, h in ((0, 0, width, t), (0, height - t, width, t), (0, 0, t, height), (width - t, 0, t, height)):
        picture.new_subpixbuf(x, y, w, h).fill(rgba)
