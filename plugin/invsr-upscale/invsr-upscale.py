#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Enhance > Upscale (InvSR). This file only registers the procedure.

What a run does is in invsr_plugin/: procedure.py (the run: dialog, layers in, results out), flow.py
(the worker and the checks of its results) and gimp_adapter.py (every use of GIMP's API). The work is
done by the InvSR worker (`invsr serve`), reached through invsr_wire.client.
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

from invsr_plugin.procedure import PROCEDURE, define, run  # noqa: E402

HELP_DOMAIN = "invsr-upscale"  # the dialog's Help and F1 open help/en/index.html (help/en/gimp-help.xml maps it)


class InvSRUpscale(Gimp.PlugIn):
    def do_query_procedures(self):
        self.set_help_domain(HELP_DOMAIN, Gio.File.new_for_path(os.path.join(HERE, "help")))
        return [PROCEDURE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        define(procedure)
        return procedure


Gimp.main(InvSRUpscale.__gtype__, sys.argv)
