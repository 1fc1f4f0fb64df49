"""Save the virtual screen as a PNG: python3 screenshot.py OUT.png. Runs with GIMP's Python, beside GIMP
(gi's Gdk 3 comes with GIMP), so that a test can keep pictures of the plug-in's dialog to look at."""

import sys

import gi

gi.require_version("Gdk", "3.0")
from gi.repository import Gdk  # noqa: E402

screen = Gdk.get_default_root_window()
picture = Gdk.pixbuf_get_from_window(screen, 0, 0, screen.get_width(), screen.get_height())
picture.savev(sys.argv[1], "png", [], [])
