#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Enhance > Upscale (InvSR). Registers the procedure and wires its parts.

The work is done by the InvSR worker (`invsr serve`), reached through invsr_wire.client; the GIMP API
is used only in invsr_plugin/gimp_adapter.py; the rest is invsr_plugin/flow.py.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "vendor")]  # our modules, and a pyzmq placed here for GIMP's Python

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import GLib, GObject, Gimp, GimpUi  # noqa: E402

PROCEDURE = "python-fu-invsr-upscale"
ZMQ_MISSING = (
    "Upscale (InvSR) needs the Python module zmq (pyzmq) in the Python that GIMP runs plug-ins with, and it "
    "is missing. On Debian or Ubuntu: sudo apt install python3-zmq; on Fedora: sudo dnf install python3-zmq. "
    "For GIMP's own bundled Python (Windows, macOS, flatpak), see the README section 'In GIMP': it installs "
    "pyzmq into the plug-in's vendor folder. `invsr gimp doctor` checks this."
)


def run(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROCEDURE)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Upscale (InvSR)")
        dialog.fill(None)
        accepted = dialog.run()
        dialog.destroy()
        if not accepted:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        import zmq  # noqa: F401  (imported here so that the procedure registers, and explains, without it)
    except ImportError:
        return _failure(procedure, ZMQ_MISSING)
    from invsr_plugin import gimp_adapter
    from invsr_plugin.flow import Options, PluginError

    options = Options(**{name.replace("-", "_"): config.get_property(name) for name in ("scale", "steps", "color-fix", "seed", "tile", "output", "server")})
    try:
        new_image = upscale(image, drawables, options, gimp_adapter)
    except PluginError as error:
        return _failure(procedure, str(error))
    if new_image is not None and run_mode != Gimp.RunMode.NONINTERACTIVE:  # Filters > Repeat too: show it
        Gimp.Display.new(new_image)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def upscale(image, drawables, options, adapter):
    """Read every layer, upscale all of them, and only then change anything (one undo group)."""
    from invsr_plugin import flow

    layers = adapter.check_drawables(image, drawables)
    regions = [adapter.read_region(image, layer) for layer in layers]
    progress = adapter.Progress("Upscaling with InvSR")
    try:
        client = flow.connect(options, on_status=progress.text)
        with client:
            results = flow.upscale_regions(client, regions, options, progress.update)
        progress.text("InvSR: adding the result to the image")  # a large result takes seconds to write
        if options.output == "new-image":
            return adapter.apply_new_image(image, results, options)
        adapter.apply_scale_image(image, results, options)
        return None
    finally:
        progress.end()


def _failure(procedure, text):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error.new_literal(GLib.quark_from_string("invsr"), text, 0))


def _choice(*entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


class InvSRUpscale(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROCEDURE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_menu_label("Upscale (InvSR)...")
        procedure.add_menu_path("<Image>/Filters/Enhance")
        procedure.set_documentation(
            "Upscale layers with InvSR diffusion super-resolution",
            "Enlarges the selected layers (or the selected area) 1x to 16x with InvSR, one-step diffusion "
            "super-resolution on SD-Turbo, run by the InvSR worker on your GPU.",
            name,
        )
        procedure.set_attribution("InvSR for GIMP", "InvSR for GIMP", "2026")
        flags = GObject.ParamFlags.READWRITE
        # Mnemonics (the underlined letters) must not repeat, nor take the dialog's own: C(ancel), O(K), R(eset), H(elp), S(ave).
        procedure.add_double_argument("scale", "Sc_ale", "Enlargement, 1 to 16", 1.0, 16.0, 4.0, flags)
        procedure.add_int_argument("steps", "Ste_ps", "Diffusion steps, 1 to 5 (1 is best for most photos)", 1, 5, 1, flags)
        procedure.add_choice_argument("color-fix", "Colour _fix", "Keep the input's colours", _choice(("wavelet", "Wavelet"), ("ycbcr", "YCbCr"), ("none", "None")), "wavelet", flags)
        procedure.add_int_argument("seed", "See_d", "Random seed: the same seed gives the same result", 0, 2**31 - 1, 0, flags)
        procedure.add_int_argument("tile", "_Tile", "Tile size in input pixels, a multiple of 16; 0 is automatic", 0, 1024, 0, flags)
        procedure.add_choice_argument("output", "O_utput", "Where the result goes", _choice(("scale-image", "Scale the image, result as a new layer"), ("new-image", "A new image")), "scale-image", flags)
        procedure.add_string_argument("server", "Wor_ker", "A worker's connection file; empty for the local worker", "", flags)
        return procedure


Gimp.main(InvSRUpscale.__gtype__, sys.argv)
