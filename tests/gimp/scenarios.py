"""Runs inside GIMP 3 (gimp-console's Python batch interpreter): builds test images, calls the plug-in
the way GIMP does, and writes what happened to a results folder for tests/test_gimp_plugin.py to check.

Usage, inside GIMP:  exec(open(THIS).read())  with the environment variable INVSR_SCENARIOS naming a JSON
plan: {"out": folder, "plugin": plug-in folder, "scenarios": [{"name": ..., ...}, ...]}.
Standard library and gi only: this is GIMP's Python.
"""

import dataclasses
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, Gio  # noqa: E402

PLAN = json.loads(open(os.environ["INVSR_SCENARIOS"]).read())
OUT = PLAN["out"]
sys.path.insert(0, PLAN["plugin"])
PRECISIONS = {
    "u8": Gimp.Precision.U8_NON_LINEAR,
    "u16": Gimp.Precision.U16_NON_LINEAR,
    "u32": Gimp.Precision.U32_NON_LINEAR,
    "half": Gimp.Precision.HALF_NON_LINEAR,
    "float": Gimp.Precision.FLOAT_NON_LINEAR,
    "double": Gimp.Precision.DOUBLE_NON_LINEAR,
    "float-linear": Gimp.Precision.FLOAT_LINEAR,
}


def pattern(width, height, channels, sample, seed):
    """Smooth gradients plus texture, as raw samples of `sample` ("u8", "u16" or "float")."""
    rng = random.Random(seed)
    values = []
    for y in range(height):
        for x in range(width):
            for c in range(channels):
                v = (x / max(1, width - 1) * (c + 1) + y / max(1, height - 1) * (3 - c)) / 4 + rng.uniform(-0.08, 0.08)
                if c == channels - 1 and channels in (2, 4):
                    v = 1.0 if x > 2 else 0.5  # alpha: mostly opaque, a half-transparent strip
                values.append(min(1.0, max(0.0, v)))
    if sample == "u8":
        return bytes(round(v * 255) for v in values)
    if sample == "u16":
        return struct.pack(f"={len(values)}H", *(round(v * 65535) for v in values))
    return struct.pack(f"={len(values)}f", *values)


def babl(drawable, base):
    return Babl.get_name(Babl.format_with_space(base, drawable.get_format()))


def add_layer(image, spec, parent=None):
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    alpha = spec.get("alpha", False)
    kind = {
        (False, False): Gimp.ImageType.RGB_IMAGE,
        (False, True): Gimp.ImageType.RGBA_IMAGE,
        (True, False): Gimp.ImageType.GRAY_IMAGE,
        (True, True): Gimp.ImageType.GRAYA_IMAGE,
    }[(gray, alpha)]
    width, height = spec["size"]
    layer = Gimp.Layer.new(image, spec["name"], width, height, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, parent, 0)
    layer.set_offsets(*spec.get("offsets", (0, 0)))
    channels = (1 if gray else 3) + alpha
    sample = spec["sample"]
    data = spec.get("pixels") and bytes(spec["pixels"]) or pattern(width, height, channels, sample, spec.get("seed", 1))
    base = ("Y'" if gray else "R'G'B'") + ("A" if alpha else "")
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, width, height), babl(layer, f"{base} {sample}"), data)
    layer.set_opacity(spec.get("opacity", 100.0))
    layer.set_mode(getattr(Gimp.LayerMode, spec.get("mode", "NORMAL")))
    layer.set_visible(spec.get("visible", True))
    if spec.get("mask") == "left-half":  # white over the left half, black elsewhere
        mask = layer.create_mask(Gimp.AddMaskType.BLACK)
        layer.add_mask(mask)
        row = bytes([255] * (width // 2) + [0] * (width - width // 2))
        mask.get_buffer().set(Gegl.Rectangle.new(0, 0, width, height), "Y u8", row * height)
    return layer


def build(scenario):
    width, height = scenario["canvas"]
    base = Gimp.ImageBaseType.GRAY if scenario.get("gray") else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new_with_precision(width, height, base, PRECISIONS[scenario.get("precision", "u8")])
    if scenario.get("profile") == "adobe":
        image.set_color_profile(Gimp.ColorProfile.new_rgb_adobe())
    layers = {}
    for spec in scenario["layers"]:
        parent = None
        if spec.get("group"):
            parent = Gimp.GroupLayer.new(image, spec["group"])
            image.insert_layer(parent, None, 0)
        layers[spec["name"]] = add_layer(image, spec, parent)
    if scenario.get("file"):  # as if opened from this file (an XCF), in the results folder, beside these
        for name in scenario.get("files_beside", []):
            open(os.path.join(OUT, name), "wb").close()
        image.set_file(Gio.File.new_for_path(os.path.join(OUT, scenario["file"])))
    if scenario.get("select"):
        image.select_rectangle(Gimp.ChannelOps.REPLACE, *scenario["select"])
    if scenario.get("indexed"):
        image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16, False, False, "")
        layers = {layer.get_name(): layer for layer in image.get_layers()}
    return image, layers


def describe(image, store, prefix):
    """Sizes, layers (with offsets, parent, parasite, mask) and every layer's pixels in the plug-in's encoding."""
    from invsr_plugin.gimp_adapter import _encoding

    found = []

    def walk(items, parent):
        for item in items:
            _, x, y = item.get_offsets()
            entry = {
                "name": item.get_name(),
                "offsets": [x, y],
                "size": [item.get_width(), item.get_height()],
                "parent": parent,
                "group": item.is_group(),
                "mask": item.get_mask() is not None,
            }
            entry.update(
                mode=item.get_mode().value_nick, opacity=round(item.get_opacity(), 3), visible=item.get_visible()
            )
            if item.get_mask() is not None:  # the mask as 8-bit gray, row by row
                rect = Gegl.Rectangle.new(0, 0, item.get_width(), item.get_height())
                entry["mask_pixels"] = list(
                    bytes(item.get_mask().get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.CLAMP))
                )
            parasite = item.get_parasite("invsr-upscale")
            if parasite is not None:
                entry["parasite"] = json.loads(bytes(b & 0xFF for b in parasite.get_data()).decode("ascii"))
            if item.is_group():
                walk(item.get_children(), item.get_name())
            elif image.get_base_type() != Gimp.ImageBaseType.INDEXED:
                encoding, dtype = _encoding(image, item)
                rect = Gegl.Rectangle.new(0, 0, item.get_width(), item.get_height())
                name = f"{prefix}-{len(store)}.raw"
                with open(os.path.join(OUT, name), "wb") as f:
                    f.write(bytes(item.get_buffer().get(rect, 1.0, encoding, Gegl.AbyssPolicy.CLAMP)))
                store.append(name)
                entry.update(
                    pixels=name,
                    encoding=encoding,
                    dtype=dtype,
                    channels=(1 if image.get_base_type() == Gimp.ImageBaseType.GRAY else 3) + item.has_alpha(),
                )
            found.append(entry)

    walk(image.get_layers(), None)
    _, selected, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    return {
        "name": image.get_name(),  # as its window's title shows it
        "size": [image.get_width(), image.get_height()],
        "layers": found,
        "selection": [x1, y1, x2, y2] if selected else None,
    }


def call_plugin(image, drawables, arguments, dialog=None, mode=None, name="python-fu-invsr-upscale"):
    """Through the PDB, as GIMP does; with `dialog`, interactively: the plug-in opens its dialog on the
    virtual screen, and xdotool does there what `dialog` lists (see `answer`). `mode`: another run mode;
    `name`: the other procedure (Upscale All Open Images)."""
    procedure = Gimp.get_pdb().lookup_procedure(name)
    title = DIALOG_TITLES[name]
    config = procedure.create_config()
    config.set_property("run-mode", mode or (Gimp.RunMode.INTERACTIVE if dialog else Gimp.RunMode.NONINTERACTIVE))
    log = open(answers_log(), "a") if dialog else None  # each command, as it ran
    user = (
        subprocess.Popen(["sh", "-xc", answer(dialog, title)], stderr=log, start_new_session=True) if dialog else None
    )
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    for name, value in arguments.items():
        config.set_property(name, value)
    result = procedure.run(config)
    if user is not None and user.poll() is None:  # a dialog that never opened: its answer must not go to the next
        os.killpg(user.pid, signal.SIGTERM)
        user.wait()
    if user is not None:  # the next scenario's answer must not find this dialog's window, closing
        find = ["xdotool", "search", "--name", title]
        for _ in range(50):
            if subprocess.run(find, capture_output=True).returncode != 0:
                break
            time.sleep(0.2)
    status = result.index(0)
    error = result.index(1) if result.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else None
    return status.value_nick, (
        error.message if hasattr(error, "message") else str(error)
    ) if error is not None else None


DIALOG_TITLES = {  # each procedure's dialog, as xdotool finds it by its title
    "python-fu-invsr-upscale": "^Upscale [(]InvSR[)]$",
    "python-fu-invsr-upscale-all": "^Upscale All Open Images [(]InvSR[)]$",
}


def on_window(title: str):
    """A function of what to do in the window titled `title` (xdotool commands after `windowfocus`, or `&& ...`)
    giving the shell command that does it: in the newest such window on the screen that takes the focus. An
    older one may still be listed (a question just closed, say), with an id that is no longer valid."""

    def then(action: str) -> str:
        windows = f"$(xdotool search --onlyvisible --name '{title}' | tac)"
        return f"(for w in {windows}; do xdotool windowfocus --sync $w {action} && exit 0; done; exit 1)"

    return then


def retried(command: str, times: int = 5) -> str:
    """`command` again (after half a second) where it fails, `times` at most: a window just found on the screen
    can be gone by the time xdotool sends it the key (BadWindow: a question GTK maps twice, say), and one failed
    step would end every step after it."""
    return f"(for i in $(seq {times}); do {command} && exit 0; sleep 0.5; done; exit 1)"


def answers_log() -> str:
    """Where the commands answering the scenario now running go, as they ran (sh -x): OUT/answers-NAME.log."""
    return os.path.join(OUT, f"answers-{RUNNING['scenario']}.log")


RUNNING = {"scenario": "none"}  # the scenario now running, set by the loop at the end
STUCK = "stuck:"  # in an answers log, where a dialog was left open after its steps (see `left_open`)


def answer(steps, window=DIALOG_TITLES["python-fu-invsr-upscale"]):
    """A shell command doing, in order, what `steps` say, in the window last waited for (at first the
    plug-in's dialog, `window`): ["key", "alt+a ctrl+a"] presses keys, ["close", "Escape"] presses a key until the
    window is gone (without a window manager a key can miss a new window's focus), ["press", "F1"] one key
    with no modifier, ["type", "120"] types text, ["shot", NAME] saves the screen as OUT/NAME.png,
    ["shot-when-shown", [NAME, BLOCK, W, H, SECONDS]] saves it once it shows BLOCK (see screenshot.py),
    ["sleep", SECONDS] waits, ["window", TITLE] waits for a window whose title matches TITLE (a regular
    expression), ["until", CONDITION] waits for a shell condition, ["windows", NAME] lists the windows on
    the screen in OUT/NAME.txt, ["size", NAME] writes the window's "WIDTH HEIGHT" there. Without a window
    manager, a window gets the keyboard only when given it."""
    # the pointer to the screen's corner, where it shows no widget's tooltip over what a picture must show
    commands = ["(xdotool mousemove 10000 10000 || true)"]
    commands += [f"xdotool search --sync --onlyvisible --name '{window}' >/dev/null", "sleep 1"]
    dialog = window
    for kind, value in steps:
        focus = on_window(window)
        if kind == "window":
            window = value
            commands += [f"xdotool search --sync --onlyvisible --name '{value}' >/dev/null", "sleep 1"]
        elif kind == "key":
            commands += [retried(focus(f"key --clearmodifiers --delay 100 {value}")), "sleep 0.5"]
        elif kind == "close":  # a key that closes the window, pressed again (10 times at most) while it stays
            press = focus(f"key --clearmodifiers --delay 100 {value}")
            gone = f"! xdotool search --onlyvisible --name '{window}' >/dev/null"
            commands.append(f"for i in $(seq 10); do {press}; sleep 1; {gone} && break; done; true")
        elif kind == "press":  # one key alone by its key code (xdotool adds Alt to F1 to F12 on Debian 14)
            press = os.path.join(os.path.dirname(PLAN["screenshot"]), "press_key.py")
            commands += [retried(focus(f"&& python3 {press} {value}")), "sleep 0.5"]
        elif kind == "type":
            commands += [retried(focus(f"type --delay 50 '{value}'")), "sleep 0.5"]
        elif kind == "shot-when-shown":  # value: NAME, and what to wait for (screenshot.py's arguments)
            name, *until = value
            commands.append(f"python3 {PLAN['screenshot']} {os.path.join(OUT, name)}.png {' '.join(map(str, until))}")
        elif kind == "shot":  # a picture to look at: the steps after it go on without it
            commands.append(f"(python3 {PLAN['screenshot']} {os.path.join(OUT, value)}.png || true)")
        elif kind == "sleep":  # seconds, for what the dialog finds out in the background
            commands.append(f"sleep {float(value)}")
        elif kind == "until":  # a shell condition, given 30 s to hold (then the steps go on regardless)
            commands.append(f"for i in $(seq 60); do {value} && break; sleep 0.5; done; true")
        elif kind == "windows":  # the titles of the windows on the screen, one a line, in OUT/NAME.txt
            titles = os.path.join(OUT, value + ".txt")
            commands.append(f"(xdotool search --onlyvisible --name . getwindowname %@ > {titles} || true)")
        elif kind == "size":  # the window's width and height once it settled, "W H", in OUT/NAME.txt
            size = f"xdotool search --onlyvisible --name '{window}' getwindowgeometry --shell %1"
            size += " | grep -E '^(WIDTH|HEIGHT)='"
            commands += ["sleep 1", f"({size} | cut -d= -f2 | paste -sd' ' > {os.path.join(OUT, value)}.txt || true)"]
    return f"({' && '.join(commands)}); {left_open(f'{dialog}|{window}')}"


def left_open(titles: str, seconds: int = 60) -> str:
    """A shell command for after the steps, done or failed: a window titled `titles` (a regular expression)
    still open `seconds` later waits for a user who is not there, and the whole run with it. Then the screen is
    kept (OUT/stuck-SCENARIO.png) and its windows listed in the answers log after STUCK, and Escape is pressed
    until the window goes, so that the run goes on and its test says what was left open, and how it looked."""
    open_now = f"xdotool search --onlyvisible --name '{titles}' >/dev/null"
    shot = f"python3 {PLAN['screenshot']} {os.path.join(OUT, 'stuck-' + RUNNING['scenario'])}.png"
    listed = "xdotool search --onlyvisible --name . getwindowname %@ >&2"
    escape = "xdotool key --clearmodifiers Escape; " + on_window(titles)("key --clearmodifiers Escape")
    close = f"for i in $(seq 10); do {escape}; sleep 1; {open_now} || break; done"
    said = f"echo '{STUCK} open {seconds} s after the last step' >&2"
    return f"sleep {seconds}; if {open_now}; then {said}; {shot}; {listed}; {close}; fi"


def run(scenario):
    store = []
    image, layers = build(scenario)
    before = describe(image, store, scenario["name"] + "-before")
    existing = {i.get_id() for i in Gimp.get_images()}
    drawables = [layers[name] for name in scenario.get("targets", [scenario["layers"][0]["name"]])]
    if scenario.get("target_mask"):  # the layer's mask selected, as when the user clicked its thumbnail
        drawables = [layer.get_mask() for layer in drawables]
    if scenario.get("target_channel"):  # a channel selected (in the Channels dialog), no layer
        drawables = [Gimp.Selection.save(image)]
    dialog = scenario.get("dialog") or ([["key", scenario["dialog_key"]]] if scenario.get("dialog_key") else None)
    mode = getattr(Gimp.RunMode, scenario["mode"]) if scenario.get("mode") else None  # WITH_LAST_VALS, say
    status, error = call_plugin(image, drawables, scenario.get("arguments", {}), dialog, mode)
    selected = [selected_item(item) for item in image.get_selected_drawables()]
    repeated = None
    if scenario.get("repeat"):  # Filters > Repeat: the same procedure, on what is selected now
        again = call_plugin(image, image.get_selected_drawables(), scenario.get("arguments", {}))
        repeated = {"status": again[0], "error": again[1], "size": [image.get_width(), image.get_height()]}
    after = describe(image, store, scenario["name"] + "-after")
    new_images = [i for i in Gimp.get_images() if i.get_id() not in existing]
    created = [describe(i, store, scenario["name"] + "-new") for i in new_images]
    for i in new_images:
        i.delete()
    image.delete()
    return {
        "status": status,
        "error": error,
        "before": before,
        "after": after,
        "new_images": created,
        "selected": selected,
        "repeated": repeated,
    }


def selected_item(item):
    """What kind of item is selected, and its name (a mask's, its layer's)."""
    if item.is_layer_mask():
        return ["mask", Gimp.Layer.from_mask(item).get_name()]
    return ["layer" if item.is_layer() else "channel", item.get_name()]


def record_calls(owner, name, calls, originals):
    """`owner.name` replaced by a function that notes each call in `calls` (the name, and the call's text and
    number arguments), then makes it; the original kept in `originals[owner, name]`."""
    originals[owner, name] = original = getattr(owner, name)

    def recorder(*args):
        calls.append([name, *[a for a in args if isinstance(a, (str, float))]])
        return original(*args)

    setattr(owner, name, recorder)


def run_recording(scenario):
    """The plug-in's work function in this process, with the image's undo and change calls and GIMP's
    progress calls recorded (in batch mode the progress bar itself shows nothing). `delete_during`: the
    layer to delete (or with `delete_group`, its group) while the worker runs, as a user could."""
    import invsr_plugin.gimp_adapter as adapter
    from invsr_plugin import flow, procedure

    image, layers = build(scenario)
    calls, originals = [], {}
    watched = [(Gimp.Image, name) for name in ("undo_group_start", "undo_group_end", "scale", "insert_layer")]
    watched += [
        (Gimp, name)
        for name in ("progress_init", "progress_update", "progress_set_text", "progress_pulse", "progress_end")
    ]
    for owner, name in watched:
        record_calls(owner, name, calls, originals)
    upscale_regions = flow.upscale_regions
    if scenario.get("delete_during"):

        def upscale_then_delete(*args):
            results = upscale_regions(*args)
            doomed = layers[scenario["delete_during"]]
            image.remove_layer(doomed.get_parent() if scenario.get("delete_group") else doomed)
            return results

        flow.upscale_regions = upscale_then_delete
    if scenario.get("tamper"):  # a worker that answers with what was not asked for: the guard must keep it out
        flow.upscale_regions = lambda client, *rest: upscale_regions(Tampering(client, scenario["tamper"]), *rest)
    error = None
    idle = memory_from_here()
    try:
        options = {"scale": 2.0, "server": PLAN["connection_file"], **scenario.get("options", {})}
        procedure.upscale(image, list(layers.values()), flow.Options(**options), adapter)
    except flow.PluginError as failure:
        error = str(failure)
    finally:
        memory = dict(idle, peak=status_bytes("VmHWM"))
        flow.upscale_regions = upscale_regions
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        size = [image.get_width(), image.get_height()]
        image.delete()
    return {"calls": calls, "error": error, "size_after": size, "memory": memory}


def memory_from_here() -> dict:
    """This process's resident size now (bytes), its peak reset to it so that VmHWM afterwards is the peak of
    what runs from here on (Linux: clear_refs 5); "reset" False where the peak could not be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    return {"idle": status_bytes("VmRSS"), "reset": reset}


def status_bytes(field: str) -> int | None:
    """A size from /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024  # written in kB


class Tampering:
    """The worker's real answer, then changed as `how` says, sent as one band (as a worker of protocol 3.1
    does): "width" (one column more, with its pixels) or "bytes" (the header right, the last row missing)."""

    def __init__(self, client, how):
        self.client, self.how = client, how

    def upscale_bands(self, pixels, width, height, channels, dtype, request, on_band, **_):
        from invsr_wire.replies import Band

        result = self.client.upscale(pixels, width, height, channels, dtype, request)
        data = bytes(result.pixels)
        row = len(data) // result.height
        rows, band_width = result.height, result.width
        if self.how == "width":
            pixel = row // result.width
            data = b"".join(data[y * row : (y + 1) * row] + data[y * row : y * row + pixel] for y in range(rows))
            band_width = result.width + 1
            result = dataclasses.replace(result, width=band_width)
        elif self.how == "bytes":
            rows, data = rows - 1, data[:-row]
        on_band(Band(0, 0, rows, band_width, result.channels, result.dtype, memoryview(data)))
        return dataclasses.replace(result, pixels=memoryview(b""))


def build_all(scenario):
    """The images `scenario["images"]` describes (each as a scenario does), each with its `targets` selected."""
    built = []
    for spec in scenario["images"]:
        image, layers = build(spec)
        image.set_selected_layers([layers[name] for name in spec.get("targets", [spec["layers"][0]["name"]])])
        built.append((spec["name"], image))
    return built


def run_all_images(scenario):
    """Upscale All Open Images through the PDB, over the images `scenario["images"]` builds; with `dialog`,
    interactively (see call_plugin)."""
    store = []
    built = build_all(scenario)
    case = scenario["name"]  # in the pixel files' names: the same images may be built for another scenario
    before = {name: describe(image, store, f"{case}-{name}-before") for name, image in built}
    first = built[0][1]
    status, error = call_plugin(
        first,
        first.get_selected_drawables(),
        scenario["arguments"],
        scenario.get("dialog"),
        name="python-fu-invsr-upscale-all",
    )
    after = {name: describe(image, store, f"{case}-{name}-after") for name, image in built}
    opened = len(Gimp.get_images()) - len(built)
    for image in Gimp.get_images():
        image.delete()
    return {"status": status, "error": error, "before": before, "after": after, "opened": opened}


def run_all_images_recording(scenario):
    """Upscale All Open Images' work function (all_images.upscale_all) in this process, over the images
    `scenario["images"]` builds, with each image's undo and change calls, each upscale request (its image
    and layers) and GIMP's progress calls recorded in order."""
    import invsr_plugin.gimp_adapter as adapter
    from invsr_plugin import all_images, flow

    built = build_all(scenario)
    names = {image.get_id(): name for name, image in built}
    labels = {name: adapter.image_label(image) for name, image in built}  # as the message names them
    calls, originals = [], {}
    for owner, name in [(Gimp.Image, name) for name in ("undo_group_start", "undo_group_end", "scale", "insert_layer")]:
        originals[owner, name] = getattr(owner, name)

        def on_image(image, *args, _key=(owner, name)):
            calls.append([_key[1], names.get(image.get_id())])
            return originals[_key](image, *args)

        setattr(owner, name, on_image)
    for name in ("progress_init", "progress_update", "progress_set_text", "progress_end"):
        record_calls(Gimp, name, calls, originals)
    upscale_regions = flow.upscale_regions

    def recorded(client, regions, *args):
        image = names.get(regions[0].layer.get_image().get_id())
        calls.append(["upscale_regions", image, [region.layer_name for region in regions]])
        return upscale_regions(client, regions, *args)

    flow.upscale_regions = recorded
    try:
        plans, left_out = all_images.plans_of(adapter, scenario["arguments"]["layers"])
        options = flow.Options(scale=2.0, server=PLAN["connection_file"])
        outcome = all_images.upscale_all(plans, lambda job: options, adapter)
    finally:
        flow.upscale_regions = upscale_regions
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
        for image in Gimp.get_images():
            image.delete()
    return {"calls": calls, "done": outcome.done, "left_out": [*left_out, *outcome.left_out], "labels": labels}


def use_settings(scenario):
    """The plug-in's settings file (INVSR_GIMP_SETTINGS, which the plug-in reads at each call) as the scenario
    has it: `settings` its JSON, or null for none (a plug-in not installed by `invsr gimp install`)."""
    if "settings" not in scenario:
        return
    path = os.environ["INVSR_GIMP_SETTINGS"]
    if scenario["settings"] is None:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w") as f:
        json.dump(scenario["settings"], f)


def run_any(scenario):
    use_settings(scenario)
    if scenario.get("images"):
        return run_all_images_recording(scenario) if scenario.get("record_calls") else run_all_images(scenario)
    return run_recording(scenario) if scenario.get("record_calls") else run(scenario)


def answers_tail(lines: int = 60) -> str | None:
    """The end of the scenario's answers log, for its test to tell how the dialog was answered when it fails."""
    try:
        with open(answers_log()) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return None


results = {}
for scenario in PLAN["scenarios"]:
    RUNNING["scenario"] = scenario["name"]
    try:
        results[scenario["name"]] = run_any(scenario)
    except Exception:
        results[scenario["name"]] = {"crash": traceback.format_exc()}
    results[scenario["name"]]["answers"] = answers_tail()
    with open(os.path.join(OUT, "results.json"), "w") as f:  # after each: a run that times out says how far it got
        json.dump(results, f, indent=1)
