"""What Filters > Enhance > Upscale All Open Images (InvSR) does: the dialog of Upscale (InvSR), with the same
settings and one more (which layers of each image), then every open image upscaled in turn with them. Each
image changes only once its own results are in and checked, in one undo group of its own; one progress bar
runs over all of them; the images that cannot be done are named at the end, with why.

Cancel on GIMP's progress bar ends the plug-in at once (GIMP stops its process): the images done until then
keep their results, each its own undo step, and the others stay as they were.
"""

from __future__ import annotations

import dataclasses

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from . import batch, dialog, sizing  # noqa: E402
from .errors import PluginError  # noqa: E402
from .procedure import (  # noqa: E402
    ARGUMENTS,
    AUX_ARGUMENTS,
    asks_user,
    choice,
    connected,
    define_arguments,
    failure,
    options_from,
    settle,
    upscale_image,
)

PROCEDURE = "python-fu-invsr-upscale-all"
TITLE = "Upscale All Open Images (InvSR)"
# What "every layer" means is in gimp_adapter.layers_of_image. The selected layers come first: what the single
# entry upscales, and what a photo just opened has (its one layer).
LAYER_CHOICES = (("selected", "The selected layers of each image"), ("every", "Every layer of each image"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """One image to upscale: which layers, and their sizes."""

    image: object
    label: str
    layers: list
    job: sizing.Job


@dataclasses.dataclass
class Outcome:
    """What a run did: how many images it upscaled, the new images it made, the images it left out and why."""

    done: int = 0
    new_images: list = dataclasses.field(default_factory=list)
    left_out: list = dataclasses.field(default_factory=list)  # (image label, why)


def define(procedure) -> None:
    """Where the procedure appears, what it says of itself, and its arguments: which layers, then the upscale's."""
    procedure.set_image_types("*")  # from an indexed image too: the others can be done
    procedure.set_sensitivity_mask(
        Gimp.ProcedureSensitivityMask.DRAWABLE
        | Gimp.ProcedureSensitivityMask.DRAWABLES
        | Gimp.ProcedureSensitivityMask.NO_DRAWABLES
    )
    procedure.set_menu_label("Upscale All Open I_mages (InvSR)...")  # M: free in Filters > Enhance, U is taken
    procedure.add_menu_path("<Image>/Filters/Enhance")
    procedure.set_documentation(
        "Upscale every open image with InvSR diffusion super-resolution",
        "Enlarges the selected layers (or every layer) of every open image 1x to 16x with InvSR, with the same "
        "settings, one undo step per image. Images that cannot be upscaled (indexed ones, say) are named at the end.",
        PROCEDURE,
    )
    procedure.set_attribution("InvSR for GIMP", "InvSR for GIMP", "2026")
    procedure.add_choice_argument(  # Y: not among the upscale's own mnemonics (procedure.define_arguments)
        "layers",
        "La_yers",
        "Which layers of each open image are upscaled",
        choice(*LAYER_CHOICES),
        LAYER_CHOICES[0][0],
        GObject.ParamFlags.READWRITE,
    )
    define_arguments(procedure)


def run(procedure, run_mode, image, drawables, config, data):
    """The procedure's run function, as GIMP calls it: `image` is the one whose menu it came from."""
    from . import gimp_adapter

    by_choice = {which: plans_of(gimp_adapter, which) for which, _ in LAYER_CHOICES}
    shown = [plan for plans, _ in by_choice.values() for plan in plans]
    if not shown:
        return failure(procedure, batch.left_out_text(by_choice[config.get_property("layers")][1], 0))
    current = next((plan for plan in shown if image is not None and plan.image.get_id() == image.get_id()), shown[0])
    form = dialog.Form(
        TITLE,
        current.layers[0],
        options_of=lambda values: options_from(values, current.job),
        estimate_of=lambda values, pace: estimate(values, by_choice[values.get_property("layers")], pace),
        fields=("layers",),
    )
    refused, interactive = settle(procedure, run_mode, config, form)
    if refused is not None:
        return refused
    plans, left_out = by_choice[config.get_property("layers")]
    try:
        outcome = upscale_all(plans, lambda job: options_from(config, job), gimp_adapter)
    except PluginError as error:  # no worker: no image was changed
        if interactive:
            gimp_adapter.keep_dialog_values(config, ("layers", *ARGUMENTS, *AUX_ARGUMENTS))
        return failure(procedure, str(error))
    return finish(procedure, run_mode, outcome, left_out)


def finish(procedure, run_mode, outcome: Outcome, left_out: list):
    """Show the new images, and say which images were left out: as the failure itself when none was done."""
    from . import gimp_adapter

    for new_image in outcome.new_images:
        if asks_user(run_mode) and gimp_adapter.in_gimps_window():
            Gimp.Display.new(new_image)
    Gimp.displays_flush()
    left_out = [*left_out, *outcome.left_out]
    if left_out:
        text = batch.left_out_text(left_out, outcome.done)
        if outcome.done == 0:
            return failure(procedure, text)
        Gimp.message(text)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def plans_of(adapter, which: str) -> tuple[list[Plan], list[tuple[str, str]]]:
    """The open images that can be upscaled, with `which` layers ("selected" or "every"), and those that
    cannot, with why."""
    plans, left_out = [], []
    for image in adapter.open_images():
        label = adapter.image_label(image)
        try:
            layers = adapter.layers_of_image(image, which)
            plans.append(Plan(image, label, layers, adapter.job_of(image, layers)))
        except PluginError as error:
            left_out.append((label, str(error)))
    return plans, left_out


def estimate(config, chosen: tuple[list[Plan], list], pace: float | None) -> sizing.BatchEstimate:
    """What the run makes and costs over all images; raises PluginError, naming the image, where the target
    in pixels cannot be reached in one, or none can be upscaled."""
    plans, left_out = chosen
    if not plans:
        raise PluginError(batch.left_out_text(left_out, 0))
    estimates = []
    for plan in plans:
        try:
            options = options_from(config, plan.job)
        except PluginError as error:
            raise PluginError(f"{plan.label}: {error}") from None
        estimates.append(plan.job.estimate(options.output, options.scale, options.tile, pace))
    return sizing.BatchEstimate(tuple(estimates))


def upscale_all(plans: list[Plan], options_of, adapter) -> Outcome:
    """Every image in turn, through one worker connection, with `options_of(job)` (a target in pixels is each
    image's own scale; `estimate` has checked that each can be reached); one whose upscale fails is left out,
    the others still done. Raises PluginError only when no worker can be reached (then nothing changed)."""
    outcome, runs = Outcome(), [(plan, options_of(plan.job)) for plan in plans]
    pace = sizing.read_pace(adapter.settings_folder())
    estimates = [plan.job.estimate(options.output, options.scale, options.tile, pace) for plan, options in runs]
    work = sizing.BatchEstimate(tuple(estimates)).work_text()
    progress = adapter.Progress(f"Upscaling {sizing.images_text(len(runs))} with InvSR: {work}")
    try:
        with connected(runs[0][1], progress, work) as client:
            parts = batch.shares([estimate.tiles for estimate in estimates])
            for index, ((plan, options), share) in enumerate(zip(runs, parts)):
                part = batch.PartProgress(progress, share, f"image {index + 1}/{len(runs)}")
                _upscale_one(client, plan, options, adapter, part, outcome)
    finally:
        progress.end()
    return outcome


def _upscale_one(client, plan: Plan, options, adapter, progress: batch.PartProgress, outcome: Outcome) -> None:
    try:
        new_image = upscale_image(client, plan.image, plan.layers, options, adapter, progress)
    except PluginError as error:
        outcome.left_out.append((plan.label, str(error)))
        return
    progress.done()
    outcome.done += 1
    if new_image is not None:
        outcome.new_images.append(new_image)
