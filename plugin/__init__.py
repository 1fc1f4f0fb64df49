"""The GIMP 3 plug-in and its installer.

- invsr-upscale/  the plug-in GIMP runs in its own Python (standard library, gi and zmq only): package data,
                  so that it travels inside the wheel and is found wherever pip installed it
- install.py      `invsr gimp install | uninstall | doctor`, run in the user's environment (not in GIMP):
                  copies invsr-upscale/ and the wire package invsr.wire (as `invsr_wire`, the name the
                  plug-in imports) into GIMP's plug-in folder
- gimp_python.py  finding GIMP's own Python and making it load pyzmq

Nothing here is imported by the library. The tests install the plug-in with install.py, as a user does.
"""

from pathlib import Path

PLUGIN_NAME = "invsr-upscale"
PLUGIN_DIR = Path(__file__).resolve().parent / PLUGIN_NAME  # invsr-upscale.py and invsr_plugin/
