"""Press and release one key by its own key code, with no modifier: python3 press_key.py F1.

xdotool (3.20160805, in both Debian roots) picks the key code and modifiers for a key name from the
keyboard map; with Debian 14's keyboard map it sends F1 to F12 as Alt+F1 to Alt+F12, which GIMP takes as
another shortcut. XTest with the key's plain code sends the key alone, as a keyboard does. Runs beside
GIMP with its Python (standard library only), to the focused window of $DISPLAY.
"""

import ctypes
import sys

x11 = ctypes.CDLL("libX11.so.6")
xtest = ctypes.CDLL("libXtst.so.6")
x11.XOpenDisplay.restype = ctypes.c_void_p
x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
x11.XStringToKeysym.restype = ctypes.c_ulong
x11.XStringToKeysym.argtypes = [ctypes.c_char_p]
x11.XKeysymToKeycode.restype = ctypes.c_ubyte
x11.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x11.XFlush.argtypes = [ctypes.c_void_p]
x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
xtest.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]

display = x11.XOpenDisplay(None)
if not display:
    sys.exit("cannot open the display named by $DISPLAY")
keysym = x11.XStringToKeysym(sys.argv[1].encode())
code = x11.XKeysymToKeycode(display, keysym) if keysym else 0
if not code:
    sys.exit(f"no key for {sys.argv[1]!r} in this keyboard map")
for down in (True, False):
    xtest.XTestFakeKeyEvent(display, code, down, 0)
    x11.XFlush(display)
x11.XCloseDisplay(display)
