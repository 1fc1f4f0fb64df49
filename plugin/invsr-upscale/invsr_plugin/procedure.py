"""What Filters > Enhance > Upscale (InvSR) does when it runs: the dialog, then every selected layer
upscaled by the worker, and only then the image changed (one undo group).

The entry script (invsr-upscale.py) registers the procedure with GIMP and hands its runs to `run`.
"""

from __future__ import annotations

import random

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
from gi.repository import Gimp, GimpUi, GLib, GObject  # noqa: E402

from invsr_wire.contract import DEFAULT_SCALE, MAX_SCALE, MAX_STEPS, MIN_SCALE, MIN_STEPS  # noqa: E402

from . import dialog, flow, sizing  # noqa: E402
from .flow import Options, PluginError  # noqa: E402
from .sizing import TILE_SIZES  # noqa: E402

PROCEDURE = "python-fu-invsr-upscale"
ZMQ_MISSING = (
    "Upscale (InvSR) needs the Python module zmq (pyzmq) in the Python that GIMP runs plug-ins with, and it "
    "is missing. Run `invsr gimp install` again: it puts a pyzmq that fits GIMP's Python into the plug-in's "
    "vendor folder (or, on Debian or Ubuntu: sudo apt install python3-zmq; on Fedora: sudo dnf install "
    "python3-zmq). `invsr gimp doctor` checks this."
)
# The procedure's arguments, as `define` adds them; "random-seed", "estimate" and "worker-line" are the dialog's
# own (aux arguments).
ARGUMENTS = ("size-by", "scale", "pixels", "output", "color-fix", "steps", "seed", "tile", "server")
AUX_ARGUMENTS = ("random-seed", "estimate", "worker-line", "preview")
COLOUR_CHOICES = (
    ("wavelet", "Match the original colours and tones"),
    ("ycbcr", "Match the original colours, keep the new brightness"),
    ("none", "Keep the model's colours"),
)
OUTPUT_CHOICES = (
    ("scale-image", "Scale the image, add the result as a layer"),
    ("new-image", "Open the result as a new image"),
    ("in-place", "Keep the size: add the model's detail as a layer"),
)
SIZE_CHOICES = (("scale", "Scale"), ("width", "Width in pixels"), ("height", "Height in pixels"))
SIZE_CHOICES += (("long-edge", "Long edge in pixels"),)


def define(procedure) -> None:
    """Where the procedure appears, what it says of itself, and its arguments (the dialog's fields)."""
    procedure.set_image_types("RGB*, GRAY*")
    procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
    procedure.set_menu_label("_Upscale (InvSR)...")  # U: free in Filters > Enhance
    procedure.add_menu_path("<Image>/Filters/Enhance")
    procedure.set_documentation(
        "Upscale layers with InvSR diffusion super-resolution",
        "Enlarges the selected layers (or the selected area) 1x to 16x with InvSR, one-step diffusion "
        "super-resolution on SD-Turbo, run by the InvSR worker on your GPU.",
        PROCEDURE,
    )
    procedure.set_attribution("InvSR for GIMP", "InvSR for GIMP", "2026")
    define_arguments(procedure)


def define_arguments(procedure) -> None:
    """The upscale's settings, the same in both menu entries. Mnemonics (the underlined letters) must not
    repeat, nor take the dialog's own: H(elp), R(eset), C(ancel), U(pscale), and O(K), L(oad defaults),
    S(ave defaults), which GIMP checks too."""
    flags = GObject.ParamFlags.READWRITE
    procedure.add_choice_argument(
        "size-by", "Si_ze by", "Give the result's size as a scale or in pixels", choice(*SIZE_CHOICES), "scale", flags
    )
    procedure.add_double_argument("scale", "Sc_ale", "Enlargement, 1 to 16", MIN_SCALE, MAX_SCALE, DEFAULT_SCALE, flags)
    procedure.add_int_argument(
        "pixels", "Pi_xels", "The result's width, height or long edge in pixels", 1, 2**18, 3840, flags
    )
    procedure.add_choice_argument(
        "output", "Ou_tput", "Where the result goes", choice(*OUTPUT_CHOICES), OUTPUT_CHOICES[0][0], flags
    )
    procedure.add_choice_argument(
        "color-fix",
        "Colour _fix",
        "The upscale can shift colours slightly; this brings back the original's (colour fix)",
        choice(*COLOUR_CHOICES),
        "wavelet",
        flags,
    )
    procedure.add_int_argument(
        "steps",
        "Detail pass_es",
        "Diffusion steps, 1 to 5: more passes, more invented detail (1 is best for most photos)",
        MIN_STEPS,
        MAX_STEPS,
        1,
        flags,
    )
    procedure.add_int_argument(
        "seed",
        "Variation (see_d)",
        "The random seed: the same number gives the same result, another one other detail",
        0,
        2**31 - 1,
        0,
        flags,
    )
    tiles = choice(("auto", "Automatic"), *((str(size), f"{size} pixels") for size in TILE_SIZES))
    procedure.add_choice_argument(
        "tile",
        "P_iece size",
        "The image is upscaled in pieces (tiles) of this size; Automatic fits the GPU's memory, smaller needs less",
        tiles,
        "auto",
        flags,
    )
    procedure.add_string_argument(
        "server", "_Worker", "A worker's connection file; empty for the local worker", "", flags
    )
    procedure.add_boolean_aux_argument(
        "random-seed", "_New variation each time", "Pick a new random seed at each upscale", False, flags
    )
    procedure.add_string_aux_argument("estimate", "Result", "The result's size and cost", "", flags)
    procedure.add_string_aux_argument("worker-line", "Worker line", "Which worker upscales, and its state", "", flags)
    procedure.add_boolean_aux_argument(
        "preview", "_Preview", "Upscale a part of the layer, to see it beside a plain enlargement", False, flags
    )


def choice(*entries):
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(entries):
        choice.add(nick, index, label, "")
    return choice


def run(procedure, run_mode, image, drawables, config, data):
    """The procedure's run function, as GIMP calls it."""
    from . import gimp_adapter

    try:
        layers = gimp_adapter.layers_to_upscale(image, drawables)  # before the dialog: nothing to fill in for naught
        job = gimp_adapter.job_of(image, layers)
    except PluginError as error:
        return failure(procedure, str(error))
    form = dialog.Form(
        dialog.TITLE,
        layers[0],
        options_of=lambda values: options_from(values, job),
        estimate_of=lambda values, pace: job_estimate(values, job, pace),
    )
    refused, interactive = settle(procedure, run_mode, config, form)
    if refused is not None:
        return refused
    try:
        new_image = upscale(image, layers, options_from(config, job), gimp_adapter)
    except PluginError as error:
        if interactive:
            gimp_adapter.keep_dialog_values(config, (*ARGUMENTS, *AUX_ARGUMENTS))
        return failure(procedure, str(error))
    if new_image is not None and asks_user(run_mode) and gimp_adapter.in_gimps_window():  # Repeat's result too
        Gimp.Display.new(new_image)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def asks_user(run_mode) -> bool:
    """Whether a person is there: the dialog, or Filters > Repeat in GIMP's window; a script repeating the last
    values (WITH_LAST_VALS) in gimp-console has no screen, where opening a window would end the plug-in."""
    from . import gimp_adapter

    if run_mode == Gimp.RunMode.INTERACTIVE:
        return True
    return run_mode == Gimp.RunMode.WITH_LAST_VALS and gimp_adapter.in_gimps_window()


def settle(procedure, run_mode, config, form: dialog.Form):
    """The settings to upscale with, in `config`: the dialog's (again after "choose a smaller size", its values
    kept), the question before a large job, a new seed when asked for. Returns (the procedure's return values
    when it ends here, else None; whether the dialog was shown)."""
    from . import gimp_adapter

    asks = asks_user(run_mode)
    if asks:
        GimpUi.init(procedure.get_name())
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    while True:
        pace = sizing.read_pace(gimp_adapter.settings_folder())  # a preview in the dialog may have timed it
        if interactive and not dialog.accepted(procedure, config, form, pace):
            return cancelled(procedure), interactive
        try:
            estimate = form.estimate_of(config, sizing.read_pace(gimp_adapter.settings_folder()))
        except PluginError as error:
            return failure(procedure, str(error)), interactive
        answer = dialog.large_job_answer(estimate, form.title) if asks and estimate.is_large() else dialog.UPSCALE
        if answer == dialog.CANCEL:
            return cancelled(procedure), interactive
        if answer == dialog.UPSCALE:
            break
        interactive = True  # back to the dialog, Filters > Repeat's run too: a smaller size
    try:
        import zmq  # noqa: F401  (here, so that the procedure registers, and explains, without it)
    except ImportError:
        return failure(procedure, zmq_missing()), interactive
    if config.get_property("random-seed"):  # remembered with the other values: the result can be made again
        config.set_property("seed", random.randrange(2**31))
    return None, interactive


def zmq_missing() -> str:
    """Why zmq cannot be imported, and what to do: the vendored copy's own reason, when it is one for another
    Python (an older installer asked the python3 first on PATH, not GIMP's)."""
    from invsr_wire import vendored

    if vendored.state in (vendored.OWN, vendored.VENDORED, vendored.ABSENT):
        return ZMQ_MISSING
    return f"{ZMQ_MISSING} Here {vendored.state}."


def options_from(config, job: sizing.Job) -> Options:
    """The run's options from the procedure's arguments: a target in pixels becomes its scale."""
    value = {name: config.get_property(name) for name in ARGUMENTS}
    tile = value["tile"]
    return Options(
        scale=job.scale(value["output"], value["size-by"], value["scale"], value["pixels"]),
        steps=value["steps"],
        color_fix=value["color-fix"],
        seed=value["seed"],
        tile=0 if tile == "auto" else int(tile),
        output=value["output"],
        server=value["server"],
    )


def job_estimate(config, job: sizing.Job, pace: float | None) -> sizing.Estimate:
    """What upscaling `job` with the procedure's arguments makes and costs; raises PluginError when the
    target in pixels cannot be reached."""
    options = options_from(config, job)
    return job.estimate(options.output, options.scale, options.tile, pace)


def upscale(image, layers, options: Options, adapter):
    """Read every layer, upscale all of them, and only then change anything. `adapter` is the module
    that touches GIMP (gimp_adapter). Returns the new image, when the output is one."""
    job = adapter.job_of(image, layers)
    work = job.estimate(options.output, options.scale, options.tile, sizing.read_pace(adapter.settings_folder()))
    progress = adapter.Progress(f"Upscaling with InvSR: {work.work_text()}")  # what is ahead, from the first second
    try:
        with connected(options, progress, work.work_text()) as client:
            return upscale_image(client, image, layers, options, adapter, progress)
    finally:
        progress.end()


def connected(options: Options, progress, work: str):
    """The worker's client (a context manager); the bar says so while a worker starts."""

    def starting(_):
        progress.text(f"InvSR: starting the worker, then {work}")

    return flow.connect(options, on_status=starting)


def upscale_image(client, image, layers, options: Options, adapter, progress):
    """One image: its layers read, all of them upscaled by `client`, each result checked and written band by
    band into a layer in no image yet, and only then the image changed (one undo group), or a new image
    filled and returned. Where anything fails, the layers made are deleted: the image is as it was."""
    regions = [adapter.read_region(image, layer) for layer in layers]
    new_image = adapter.new_image_for(image, regions, options) if options.output == "new-image" else None
    made = adapter.ResultLayers(new_image or image, options, discard_image=new_image is not None)
    try:
        results = flow.upscale_regions(client, regions, options, progress.update, made)
        sizing.write_pace(adapter.settings_folder(), [result.report for result in results])
        progress.text("InvSR: adding the result to the image")
        if new_image is not None:
            return adapter.apply_new_image(image, new_image, results, options)
        adapter.apply_scale_image(image, results, options)
        return None
    except BaseException:  # a PluginError, the user's cancel, or a crash: nothing may be left behind
        made.discard()
        raise


def cancelled(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())


def failure(procedure, text):
    error = GLib.Error.new_literal(GLib.quark_from_string("invsr"), text, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)
