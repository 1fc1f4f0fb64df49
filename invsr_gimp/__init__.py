"""The GIMP 3 plug-in, carried as files: `invsr gimp install` copies invsr-upscale/ (and the wire package
invsr_wire, which the plug-in imports) into GIMP's plug-in folder, where GIMP runs it in its own Python.

Nothing here is imported by invsr itself. The plug-in is a package's data so that it travels inside the
wheel and is found wherever pip installed it; in a source checkout it is the same folder, which the tests
load into GIMP as it is.
"""

from pathlib import Path

PLUGIN_NAME = "invsr-upscale"
PLUGIN_DIR = Path(__file__).resolve().parent / PLUGIN_NAME  # invsr-upscale.py and invsr_plugin/
