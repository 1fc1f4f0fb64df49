"""Every use of GIMP's API by the plug-in: reading layers, writing results, undo, parasites, progress.

Pixels are read and written in the image's own colour space (so wide-gamut colours are not clipped to
sRGB) and in a perceptual encoding: the image's own curve when it is non-linear (an exact round trip at
the layer's own precision), else the perceptual curve, in float.
"""

from __future__ import annotations

from pathlib import Path

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
gi.require_version("Gdk", "3.0")
from gi.repository import Babl, Gdk, Gegl, Gimp, Gio  # noqa: E402

from invsr_wire.contract import scaled_side  # noqa: E402

from .flow import PARASITE, Options, PluginError, Region, Upscaled, new_image_file, record, result_name  # noqa: E402
from .sizing import Box, Job  # noqa: E402

_WIRE_TYPES = {"u8": "u8", "u16": "u16"}  # GIMP component types sent as they are; all others as float
_LAYER_TYPES = {
    1: Gimp.ImageType.GRAY_IMAGE,
    2: Gimp.ImageType.GRAYA_IMAGE,
    3: Gimp.ImageType.RGB_IMAGE,
    4: Gimp.ImageType.RGBA_IMAGE,
}


def in_gimps_window() -> bool:
    """Whether this run belongs to one of GIMP's image windows (a menu, Filters > Repeat), on a screen GTK can
    open windows on. Not in gimp-console, nor in a batch script: there a window would fail, or wait for nobody."""
    return Gimp.default_display() is not None and Gdk.Display.get_default() is not None


def layers_to_upscale(image, drawables) -> list:
    """The layers to upscale for the selected drawables: a selected layer mask stands for its layer (GIMP
    selects the mask when its thumbnail is clicked, or after a mask was added). Raises, before any dialog
    opens, when there is no layer to upscale."""
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise PluginError(
            "Upscale (InvSR) works on RGB and grayscale images. Convert this indexed image first: Image > Mode > RGB."
        )
    layers, seen = [], set()
    for drawable in drawables:
        layer = Gimp.Layer.from_mask(drawable) if drawable.is_layer_mask() else drawable
        if isinstance(layer, Gimp.Layer) and layer.get_id() not in seen:
            seen.add(layer.get_id())
            layers.append(layer)
    if not layers:
        raise PluginError("A channel cannot be upscaled. Select a layer in the Layers dialog, then upscale again.")
    return layers


def open_images() -> list:
    """Every image open in GIMP, in the order they were opened."""
    return sorted(Gimp.get_images(), key=lambda image: image.get_id())


def image_label(image) -> str:
    """An image as its window's title names it: its file's name (or [Untitled]) and its number."""
    return f"{image.get_name()}-{image.get_id()}"


def layers_of_image(image, which: str) -> list:
    """The layers a run over all open images upscales in `image`: "every" layer that holds pixels (in groups
    too, hidden ones too), or the "selected" ones. Raises when there is none, or the image cannot be done."""
    if which == "every":
        drawables = _pixel_layers(image.get_layers())
    else:
        drawables = image.get_selected_drawables()
        if not drawables:
            raise PluginError("No layer is selected in it.")
    return layers_to_upscale(image, drawables)


def _pixel_layers(items) -> list:
    """The layers under `items` that hold pixels: a group's are its children's, scaled with the image."""
    found = []
    for item in items:
        found.extend(_pixel_layers(item.get_children()) if item.is_group() else [item])
    return found


def select_results(image, layers) -> None:
    """Leave the result layers themselves selected, not their masks: Filters > Repeat acts on them."""
    for layer in layers:
        layer.set_edit_mask(False)
    image.set_selected_layers(layers)


def job_of(image, layers) -> Job:
    """The sizes of what a run on these layers works on, read without their pixels."""
    boxes = []
    for layer in layers:
        non_empty, x, y, width, height = layer.mask_intersect()
        if not non_empty:
            raise PluginError(
                f"The selection does not touch the layer {layer.get_name()!r}. "
                "Select an area over it, or Select > None, then upscale again."
            )
        _, left, top = layer.get_offsets()
        boxes.append(Box(left + x, top + y, width, height))
    return Job(image.get_width(), image.get_height(), tuple(boxes), max(layer.get_bpp() for layer in layers))


def settings_folder() -> Path:
    """GIMP's folder of this user's settings, where the plug-in keeps what it learns."""
    return Path(Gimp.directory())


def keep_dialog_values(config, names) -> None:
    """Save the dialog's values (the properties `names`) as the last used ones, as GIMP itself does only after
    a successful run: a run that then failed (a worker gone, a full disk) must not cost the user what they set
    (Re-show, Repeat). Written in GIMP's own format for them, since libgimp's writer is not reachable from
    Python (the run's config class does not show PyGObject its GimpConfig interface)."""
    lines = ["# settings", *(f"({name} {_config_value(config.get_property(name))})" for name in names)]
    path = settings_folder() / "plug-in-settings" / f"{config.__gtype__.name}.last"  # the file GIMP reads
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join([*lines, "# end of settings", ""]), encoding="utf-8")
    except OSError:
        pass  # the values are lost, as they were before: the run's own error is what the user must read


def _config_value(value) -> str:
    """A value as GIMP's configuration files write it: yes/no, numbers, strings quoted with C escapes."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return repr(value)
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
    text = "".join(escapes.get(c, c if c >= " " else f"\\{ord(c):03o}") for c in str(value))
    return f'"{text}"'


def _encoding(image, drawable) -> tuple[str, str]:
    """(Babl format name in the image's space, wire dtype) for reading and writing this layer."""
    component, _, curve = image.get_precision().value_nick.partition("-")  # e.g. "u16", "non-linear"
    profile = image.get_effective_color_profile()
    own_curve = curve == "non-linear" and not profile.is_linear()
    exact = own_curve or curve == "perceptual"
    dtype = _WIRE_TYPES.get(component, "f32") if exact else "f32"
    mark = "'" if own_curve else "~"
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    base = (f"Y{mark}" if gray else f"R{mark}G{mark}B{mark}") + ("A" if drawable.has_alpha() else "")
    babl_type = {"u8": "u8", "u16": "u16", "f32": "float"}[dtype]
    return Babl.get_name(Babl.format_with_space(f"{base} {babl_type}", drawable.get_format())), dtype


def read_region(image, layer) -> Region:
    """The layer's pixels, or with a selection only its bounding box within the layer."""
    has_selection = not Gimp.Selection.is_empty(image)
    non_empty, x, y, width, height = layer.mask_intersect()
    if not non_empty:
        raise PluginError(f"The selection does not touch the layer {layer.get_name()!r}: nothing to upscale there.")
    encoding, dtype = _encoding(image, layer)
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    channels = (1 if gray else 3) + (1 if layer.has_alpha() else 0)
    rect = Gegl.Rectangle.new(x, y, width, height)
    pixels = layer.get_buffer().get(rect, 1.0, encoding, Gegl.AbyssPolicy.CLAMP)
    return Region(layer, layer.get_name(), x, y, width, height, channels, dtype, encoding, bytes(pixels), has_selection)


def apply_scale_image(image, results: list[Upscaled], options: Options) -> list:
    """Scale the image with GIMP (unless the output keeps its size, "in-place") and put each result's layer
    (made in `image` by ResultLayers, not yet inserted) above its source, in one undo group.

    The result takes its source's place in the composition: its mode, opacity and visibility, and its
    mask (with a selection, intersected with the selection). Without a selection the source is hidden,
    since the result covers it wholly (else half-transparent pixels would count twice); with one, the
    source still shows outside the selection.
    """
    _check_still_there(image, results)
    width, height = scaled_side(image.get_width(), options.scale), scaled_side(image.get_height(), options.scale)
    image.undo_group_start()
    Gimp.context_push()
    try:
        Gimp.context_set_interpolation(Gimp.InterpolationType.NOHALO)
        if options.output != "in-place":
            image.scale(width, height)
        layers = []
        for result in results:
            source = result.region.layer
            _, left, top = source.get_offsets()  # GIMP's own scaled offsets of the source layer
            layer = _finished_layer(result, options)
            image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
            layer.set_offsets(
                left + round(result.region.x * options.scale), top + round(result.region.y * options.scale)
            )
            _mask_like_source(image, layer, source, result.region.selected)
            if not result.region.selected:
                source.set_visible(False)
            layers.append(layer)
        select_results(image, layers)
        return layers
    finally:
        Gimp.context_pop()
        image.undo_group_end()


def _check_still_there(image, results: list[Upscaled]) -> None:
    """GIMP does not lock the image during the upscale: refuse to write into an image closed, or next to
    a layer deleted, meanwhile (the result would silently go nowhere)."""
    for result in results:
        source = result.region.layer
        if not (image.is_valid() and source.is_valid() and _in_image(image, source)):
            raise PluginError(
                f"The layer {result.region.layer_name!r} or its image was closed or deleted during the upscale; "
                "nothing was changed."
            )


def _in_image(image, item) -> bool:
    while item.get_parent() is not None:
        item = item.get_parent()
    return any(top.get_id() == item.get_id() for top in image.get_layers())


def _mask_like_source(image, layer, source, selected: bool) -> None:
    """Give `layer` the (scaled) selection and the source's applied mask, both when there are both."""
    source_mask = source.get_mask() if source.get_mask() is not None and source.get_apply_mask() else None
    if source_mask is None:
        if selected:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        return
    saved = Gimp.Selection.save(image) if selected else None
    image.select_item(Gimp.ChannelOps.INTERSECT if selected else Gimp.ChannelOps.REPLACE, source_mask)
    layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    if saved is None:
        Gimp.Selection.none(image)
    else:  # the user's selection back, as it was
        image.select_item(Gimp.ChannelOps.REPLACE, saved)
        image.remove_channel(saved)


def new_image_for(image, regions: list[Region], options: Options):
    """The image the "new-image" output fills: as large as the results' bounding box, with the source's
    precision, colour profile and resolution. Made before the job, so that the result layers can be written
    into it as they come, and shown by no display until every result is in (deleted by ResultLayers.discard
    otherwise); its undo is off, since it is new."""
    boxes = [_scaled_box(image, region, options) for region in regions]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    new = Gimp.Image.new_with_precision(right - left, bottom - top, image.get_base_type(), image.get_precision())
    profile = image.get_color_profile()
    if profile is not None:
        new.set_color_profile(profile)
    _, xres, yres = image.get_resolution()
    new.set_resolution(xres, yres)
    new.undo_disable()
    return new


def apply_new_image(image, new, results: list[Upscaled], options: Options):
    """Put the results' layers (made in `new`, the image of new_image_for) into it, as the sources are
    stacked and placed, and return it."""
    _check_still_there(image, results)
    results = sorted(results, key=lambda r: _stack_position(image, r.region.layer), reverse=True)  # bottom first
    boxes = [_scaled_box(image, r.region, options) for r in results]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    for result, box in zip(results, boxes):
        layer = _finished_layer(result, options)
        new.insert_layer(layer, None, 0)
        layer.set_offsets(box[0] - left, box[1] - top)
    _name_after(new, image, options.scale)
    new.undo_enable()
    return new


def _name_after(new, image, scale: float) -> None:
    """Name `new` after its source, "photo × 4" (its file, flow.new_image_file, where Save will write it); a
    source without a file on this computer leaves it "[Untitled]"."""
    source = image.get_file()
    path = source.get_path() if source is not None else None
    if path is None:
        return
    taken = {
        f.get_path() for f in (i.get_file() for i in Gimp.get_images() if i.get_id() != new.get_id()) if f is not None
    }
    new.set_file(Gio.File.new_for_path(str(new_image_file(Path(path), scale, taken))))


def _stack_position(image, item) -> list[int]:
    """Where `item` is in the layer tree, top-level position first: a smaller one is higher."""
    positions = []
    while item is not None:
        positions.insert(0, image.get_item_position(item))
        item = item.get_parent()
    return positions


def _scaled_box(image, region: Region, options: Options) -> tuple[int, int, int, int]:
    _, left, top = region.layer.get_offsets()
    x = round((left + region.x) * options.scale)
    y = round((top + region.y) * options.scale)
    return x, y, *region.output_size(options.scale)


class ResultLayers:
    """The result layers of one image's run, made in `image` but in no layer tree (free layers: no undo, not
    seen) and written band by band as the worker sends them: GIMP's core holds the pixels, this process at
    most a band of them (and GEGL's tile cache). apply_* puts them in the image; `discard` deletes them where
    the run failed, was cancelled or its source went away, so that nothing is left behind."""

    def __init__(self, image, options: Options, discard_image: bool = False):
        self.image, self.options = image, options
        self.discard_image = discard_image  # the image is new_image_for's: delete it too
        self.layers: list = []

    def new(self, region: Region, width: int, height: int):
        """A layer for `region`'s result, composed like its source (mode, opacity, spaces, visibility)."""
        source = region.layer
        name = result_name(region.layer_name, self.options)
        kind = _LAYER_TYPES[region.channels]
        layer = Gimp.Layer.new(self.image, name, width, height, kind, source.get_opacity(), source.get_mode())
        self.layers.append(layer)
        layer.set_blend_space(source.get_blend_space())
        layer.set_composite_space(source.get_composite_space())
        layer.set_composite_mode(source.get_composite_mode())
        layer.set_visible(source.get_visible())
        return layer

    def write(self, layer, region: Region, top: int, rows: int, width: int, pixels) -> None:
        """Rows [top, top + rows) of the result, flushed to GIMP's core at once. A buffer of its own for each
        band: GEGL keeps a buffer's tiles in this process's cache (as large as GIMP's tile cache) until the
        buffer is dropped, so one buffer kept for the whole layer could come to hold all of it again."""
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, top, width, rows), region.encoding, pixels)
        buffer.flush()

    def discard(self) -> None:
        """Delete every layer made that is not in an image, and the new image itself where it is ours."""
        for layer in self.layers:
            if layer.is_valid() and not (self.image.is_valid() and _in_image(self.image, layer)):
                layer.delete()
        self.layers.clear()
        if self.discard_image and self.image.is_valid():
            self.image.delete()


def _finished_layer(result: Upscaled, options: Options):
    """The result's layer, with how it was made attached, ready to insert."""
    layer = result.layer
    layer.update(0, 0, result.width, result.height)
    data = record(result, options).encode("ascii")
    layer.attach_parasite(Gimp.Parasite.new(PARASITE, Gimp.PARASITE_PERSISTENT | Gimp.PARASITE_UNDOABLE, list(data)))
    return layer


class Progress:
    """GIMP's progress bar (no-ops in batch mode)."""

    def __init__(self, text: str):
        Gimp.progress_init(text)

    def update(self, fraction: float | None, text: str) -> None:
        """`fraction` None: work goes on but cannot be counted (the bar pulses)."""
        Gimp.progress_set_text(text)
        if fraction is None:
            Gimp.progress_pulse()
        else:
            Gimp.progress_update(max(0.0, min(1.0, fraction)))

    def text(self, text: str) -> None:
        Gimp.progress_set_text(text)
        Gimp.progress_pulse()

    def end(self) -> None:
        Gimp.progress_end()
