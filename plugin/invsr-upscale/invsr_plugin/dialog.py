"""The plug-in's dialog (GIMP's generated procedure dialog, arranged), and the question before a large job.

Up front: the result's size (a scale or pixels), where it goes and its colours, with a line that says,
live, what the run will make and cost, one that says what the worker is, and the Preview
(preview_panel.py). Behind *Advanced*: steps, seed, tile size and the worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

from . import sizing  # noqa: E402
from .flow import PluginError  # noqa: E402
from .gimp_adapter import settings_folder  # noqa: E402
from .preview_panel import PreviewPanel  # noqa: E402
from .sizing import BatchEstimate, Estimate  # noqa: E402
from .worker_field import WorkerField  # noqa: E402

TITLE = "Upscale (InvSR)"
CHOICES = ("size-by", "output", "color-fix", "tile")
ADVANCED = ("steps", "seed", "random-seed", "tile")  # then the Worker field's own widgets (worker_field.py)
FORM = ("size-by", "scale", "pixels", "estimate", "worker-line", "output", "color-fix", "advanced")


@dataclasses.dataclass(frozen=True)
class Form:
    """What one menu entry's dialog shows: its title, its own fields (above the size), the layer the Preview
    shows and the run's flow.Options for the dialog's values there (`options_of(config)`), and what the
    values make and cost (`estimate_of(config, pace)`, an Estimate; raises PluginError when impossible)."""

    title: str
    layer: object
    options_of: Callable
    estimate_of: Callable
    fields: tuple[str, ...] = ()


def accepted(procedure, config, form: Form, pace: float | None) -> bool:
    """Show the dialog; True when the user pressed Upscale."""
    options_of = form.options_of
    dialog = GimpUi.ProcedureDialog.new(procedure, config, form.title)
    dialog.set_ok_label("_Upscale")
    for name in (*form.fields, *CHOICES):  # GIMP 3.2 shows a short choice as radio buttons, uneven beside the rest
        dialog.get_widget(name, Gtk.ComboBox.__gtype__)
    estimate = dialog.get_label("estimate", "", False, False)  # follows the "estimate" argument
    estimate.set_xalign(0.0)
    estimate.set_line_wrap(True)
    WorkerField.line_label(dialog)
    worker = WorkerField(config, dialog.fill_box("advanced-box", ADVANCED))
    dialog.get_label("advanced-title", "Ad_vanced", False, True)
    expander = dialog.fill_expander("advanced", "advanced-title", False, "advanced-box")

    def timed(report: dict) -> None:  # a preview's timing is the pace of a run: the estimate's time, at once
        nonlocal pace
        sizing.write_pace(settings_folder(), [report])
        pace = sizing.read_pace(settings_folder())
        update()

    preview = PreviewPanel(config, form.layer, options_of, on_worker_up=worker.check, on_timed=timed)
    dialog.fill_box("preview-box", ["preview"]).pack_start(preview.widget, False, False, 0)

    sizes = {name: dialog.get_widget(name, GObject.TYPE_NONE) for name in ("size-by", "scale", "pixels")}

    def update(*_):
        text, possible = estimate_text(config, form, pace)
        config.set_property("estimate", text)  # when impossible, why: beside the Upscale it disables
        dialog.set_response_sensitive(Gtk.ResponseType.OK, possible)
        in_place, by_scale = config.get_property("output") == "in-place", config.get_property("size-by") == "scale"
        if possible and not in_place and not by_scale:  # the greyed Scale field shows what the target gives
            given = options_of(config).scale
            if abs(config.get_property("scale") - given) > 1e-6:
                config.set_property("scale", given)
        sizes["size-by"].set_sensitive(not in_place)  # the size is the image's own
        sizes["scale"].set_sensitive(not in_place and by_scale)
        sizes["pixels"].set_sensitive(not in_place and not by_scale)

    def shrink(*_):  # to what is shown now: back to its size when Advanced or Preview close
        GLib.idle_add(lambda: dialog.resize(1, 1) and False)

    watched = [
        config.connect(f"notify::{name}", update)
        for name in ("size-by", "scale", "pixels", "output", "tile", *form.fields)
    ]
    watched.append(config.connect("notify::preview", shrink))
    expander.connect("notify::expanded", shrink)
    # the settings, and the preview beside them: the dialog fits a 768-pixel screen with both open
    dialog.fill_box("settings-box", [*form.fields, *FORM])
    row = dialog.fill_box("row", ["settings-box", "preview-box"])
    row.set_orientation(Gtk.Orientation.HORIZONTAL)
    row.set_spacing(18)
    dialog.fill(["row"])
    update()
    dialog.set_sensitive_if_in("seed", None, "random-seed", _values(True), False)  # once the widgets are there
    preview.start()
    try:
        return dialog.run()
    finally:
        preview.close()
        worker.close()
        for handler in watched:
            config.disconnect(handler)
        dialog.destroy()


def estimate_text(config, form: Form, pace: float | None) -> tuple[str, bool]:
    """What the current values will make and cost, or why they cannot work; and whether they can."""
    try:
        return "Result: " + form.estimate_of(config, pace).text(), True
    except PluginError as error:
        return str(error), False


UPSCALE, BACK, CANCEL = "upscale", "back", "cancel"  # the answers to the question before a large job


def large_job_answer(estimate: Estimate | BatchEstimate, title: str) -> str:
    """Ask before a large job (sizing.Estimate.is_large): UPSCALE, BACK to the dialog (its values kept, to
    choose a smaller size), or CANCEL."""
    question = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION,
        text=f"This upscale makes {estimate.text()}.",
        title=f"{title}: a large job",
    )
    question.format_secondary_text(estimate.question())
    question.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    question.add_button("Choose a _smaller size", Gtk.ResponseType.REJECT)
    question.add_button("_Upscale", Gtk.ResponseType.OK)
    question.set_default_response(Gtk.ResponseType.REJECT)
    try:
        response = question.run()
    finally:
        question.destroy()
    return {Gtk.ResponseType.OK: UPSCALE, Gtk.ResponseType.REJECT: BACK}.get(response, CANCEL)


def _values(*values) -> Gimp.ValueArray:
    array = Gimp.ValueArray.new(len(values))
    for value in values:
        kind = GObject.TYPE_BOOLEAN if isinstance(value, bool) else GObject.TYPE_STRING
        array.append(GObject.Value(kind, value))
    return array
