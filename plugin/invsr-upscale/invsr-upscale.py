#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Enhance > Upscale (InvSR), and Upscale All Open Images (InvSR). This file only
registers the two procedures.

What a run does is in invsr_plugin/: procedure.py (the run: dialog, layers in, results out), all_images.py
(the same over every open image), flow.py (the worker and the checks of its results) and gimp_adapter.py
(every use of GIMP's API). The work is done by the InvSR worker (`invsr serve`), reached through
invsr_wire.client.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)  # our modules

from invsr_wire import vendored  # noqa: E402

vendored.put_on_path(os.path.join(HERE, "vendor"))  # a pyzmq placed there for GIMP's Python, if it needs and fits it

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import Gimp, Gio  # noqa: E402

from invsr_plugin import all_images, procedure  # noqa: E402

HELP_DOMAIN = "invsr-upscale"  # the dialog's Help and F1 open help/en/index.html (help/en/gimp-help.xml maps it)
ENTRIES = {
    procedure.PROCEDURE: (procedure.define, procedure.run),
    all_images.PROCEDURE: (all_images.define, all_images.run),
}


class InvSRUpscale(Gimp.PlugIn):
    def do_query_procedures(self):
        self.set_help_domain(HELP_DOMAIN, Gio.File.new_for_path(os.path.join(HERE, "help")))
        return list(ENTRIES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        define, run = ENTRIES[name]
        created = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        define(created)
        return created


Gimp.main(InvSRUpscale.__gtype__, sys.argv)
