"""What Filters > Enhance > Upscale (InvSR) does when it runs: the dialog, then every selected layer
upscaled by the worker, and only then the image changed (one undo group).

The entry script (invsr-upscale.py) registers the procedure with GIMP and hands its runs to `run`.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import Gimp, GimpUi, GLib, GObject  # noqa: E402

from invsr_wire.contract import DEFAULT_SCALE, MAX_SCALE, MAX_STEPS, MAX_TILE, MIN_SCALE, MIN_STEPS  # noqa: E402

from . import flow  # noqa: E402
from .flow import OUTPUTS, Options, PluginError  # noqa: E402

PROCEDURE = "python-fu-invsr-upscale"
ZMQ_MISSING = (
    "Upscale (InvSR) needs the Python module zmq (pyzmq) in the Python that GIMP runs plug-ins with, and it "
    "is missing. Run `invsr gimp install` again: it puts a pyzmq that fits GIMP's Python into the plug-in's "
    "vendor folder (or, on Debian or Ubuntu: sudo apt install python3-zmq; on Fedora: sudo dnf install "
    "python3-zmq). `invsr gimp doctor` checks this."
)
ARGUMENTS = ("scale", "steps", "color-fix", "seed", "tile", "output", "server")  # as `define` adds them


def define(procedure) -> None:
    """Where the procedure appears, what it says of itself, and its arguments (the dialog's fields)."""
    procedure.set_image_types("RGB*, GRAY*")
    procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
    procedure.set_menu_label("Upscale (InvSR)...")
    procedure.add_menu_path("<Image>/Filters/Enhance")
    procedure.set_documentation(
        "Upscale layers with InvSR diffusion super-resolution",
        "Enlarges the selected layers (or the selected area) 1x to 16x with InvSR, one-step diffusion "
        "super-resolution on SD-Turbo, run by the InvSR worker on your GPU.",
        PROCEDURE,
    )
    procedure.set_attribution("InvSR for GIMP", "InvSR for GIMP", "2026")
    flags = GObject.ParamFlags.READWRITE
    # Mnemonics (the underlined letters) must not repeat, nor take the dialog's own: C(ancel), O(K), R(eset),
    # H(elp), S(ave).
    procedure.add_double_argument("scale", "Sc_ale", "Enlargement, 1 to 16", MIN_SCALE, MAX_SCALE, DEFAULT_SCALE, flags)
    procedure.add_int_argument(
        "steps", "Ste_ps", "Diffusion steps, 1 to 5 (1 is best for most photos)", MIN_STEPS, MAX_STEPS, 1, flags
    )
    colours = _choice(("wavelet", "Wavelet"), ("ycbcr", "YCbCr"), ("none", "None"))
    procedure.add_choice_argument("color-fix", "Colour _fix", "Keep the input's colours", colours, "wavelet", flags)
    procedure.add_int_argument(
        "seed", "See_d", "Random seed: the same seed gives the same result", 0, 2**31 - 1, 0, flags
    )
    procedure.add_int_argument(
        "tile", "_Tile", "Tile size in input pixels, a multiple of 16; 0 is automatic", 0, MAX_TILE, 0, flags
    )
    outputs = _choice(*zip(OUTPUTS, ("Scale the image, result as a new layer", "A new image")))
    procedure.add_choice_argument("output", "O_utput", "Where the result goes", outputs, OUTPUTS[0], flags)
    procedure.add_string_argument(
        "server", "Wor_ker", "A worker's connection file; empty for the local worker", "", flags
    )


def _choice(*entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


def run(procedure, run_mode, image, drawables, config, data):
    """The procedure's run function, as GIMP calls it."""
    from . import gimp_adapter

    try:
        layers = gimp_adapter.layers_to_upscale(image, drawables)  # before the dialog: nothing to fill in for naught
    except PluginError as error:
        return _failure(procedure, str(error))
    if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog_accepted(procedure, config):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        import zmq  # noqa: F401  (here, so that the procedure registers, and explains, without it)
    except ImportError:
        return _failure(procedure, ZMQ_MISSING)

    options = Options(**{name.replace("-", "_"): config.get_property(name) for name in ARGUMENTS})
    try:
        new_image = upscale(image, layers, options, gimp_adapter)
    except PluginError as error:
        return _failure(procedure, str(error))
    if new_image is not None and run_mode != Gimp.RunMode.NONINTERACTIVE:  # Filters > Repeat too: show it
        Gimp.Display.new(new_image)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def upscale(image, layers, options: Options, adapter):
    """Read every layer, upscale all of them, and only then change anything. `adapter` is the module
    that touches GIMP (gimp_adapter). Returns the new image, when the output is one."""
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


def _dialog_accepted(procedure, config) -> bool:
    from .gimp_adapter import choices_as_combo_boxes

    GimpUi.init(PROCEDURE)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Upscale (InvSR)")
    choices_as_combo_boxes(dialog, ("color-fix", "output"))
    dialog.fill(None)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def _failure(procedure, text):
    error = GLib.Error.new_literal(GLib.quark_from_string("invsr"), text, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)
