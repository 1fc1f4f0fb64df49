"""Save the virtual screen as a PNG: python3 screenshot.py OUT.png. Runs with GIMP's Python, beside GIMP
(gi's Gdk 3 comes with GIMP), so that a test can keep pictures of the plug-in's dialog to look at.

    python3 screenshot.py OUT.png BLOCK.raw WIDTH HEIGHT SECONDS

waits first, up to SECONDS, until the screen shows BLOCK (WIDTH x HEIGHT pixels, 8-bit RGB rows) exactly
somewhere: for what the dialog shows when its work is done (its preview), however long that takes.
"""

import sys
import time

import gi

gi.require_version("Gdk", "3.0")
from gi.repository import Gdk  # noqa: E402


def grab():
    screen = Gdk.get_default_root_window()
    return Gdk.pixbuf_get_from_window(screen, 0, 0, screen.get_width(), screen.get_height())


def shows(picture, block: bytes, width: int, height: int) -> bool:
    """Whether `block` is in `picture`: its first row found in a screen row, then the rest below it."""
    stride, channels = picture.get_rowstride(), picture.get_n_channels()
    data = picture.get_pixels()
    rows = [block[y * width * 3 : (y + 1) * width * 3] for y in range(height)]
    if channels != 3:
        return False
    for top in range(picture.get_height() - height + 1):
        line = data[top * stride : top * stride + picture.get_width() * 3]
        start = line.find(rows[0])
        while start != -1:
            if start % 3 == 0 and all(
                data[(top + y) * stride + start : (top + y) * stride + start + width * 3] == rows[y]
                for y in range(1, height)
            ):
                return True
            start = line.find(rows[0], start + 1)
    return False


picture = grab()
if len(sys.argv) > 2:
    block, width, height, seconds = (
        open(sys.argv[2], "rb").read(),
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    deadline = time.monotonic() + seconds
    while not shows(picture, block, width, height) and time.monotonic() < deadline:
        time.sleep(0.5)
        picture = grab()
picture.savev(sys.argv[1], "png", [], [])
