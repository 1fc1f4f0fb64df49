"""The GIMP 3 plug-in in a real headless GIMP, against a real worker on the tiny weights.

Each GIMP run executes tests/gimp/scenarios.py inside GIMP: it builds images, calls the plug-in through
the PDB as GIMP would, and writes what it found. Where pixels can be checked exactly, the plug-in's
result must equal the library's in-process result on the same pixels and seed: the bridge is lossless.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gimp_harness import PLUGINS, REPO, VERSIONS, GimpRunner
from worker_helpers import WorkerProcess

from invsr.request import UpscaleRequest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the GIMP harness uses a Linux chroot or Debian's GIMP")
SCENARIOS = REPO / "tests" / "gimp" / "scenarios.py"
NUMPY_DTYPES = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}


def photo_layer(name="photo", size=(24, 20), sample="u8", **extra):
    return dict(name=name, size=list(size), sample=sample, **extra)


def scenario(name, layers, canvas=(24, 20), **extra):
    return dict(name=name, canvas=list(canvas), layers=layers, **extra)


MAIN = [
    scenario("rgb8", [photo_layer()], arguments={"scale": 2.0, "seed": 5}),
    scenario("rgba8", [photo_layer(alpha=True)], arguments={"scale": 2.0}),
    scenario("gray8", [photo_layer()], gray=True, arguments={"scale": 2.0}),
    scenario(
        "gray-alpha16", [photo_layer(sample="u16", alpha=True)], gray=True, precision="u16", arguments={"scale": 3.0}
    ),
    scenario("rgb16", [photo_layer(sample="u16")], precision="u16", arguments={"scale": 1.5, "steps": 2}),
    scenario("float", [photo_layer(sample="float")], precision="float", arguments={"scale": 2.0, "color-fix": "ycbcr"}),
    scenario("float-linear", [photo_layer(sample="float")], precision="float-linear", arguments={"scale": 2.0}),
    scenario("half", [photo_layer(sample="float", alpha=True)], precision="half", arguments={"scale": 2.0}),
    scenario("u32", [photo_layer(sample="float")], precision="u32", arguments={"scale": 2.0}),
    scenario("double", [photo_layer(sample="float")], gray=True, precision="double", arguments={"scale": 2.0}),
    scenario(
        "adobe-rgb",
        [photo_layer(size=(8, 4), pixels=[0, 255, 0] * 16 + [255, 0, 0] * 16)],
        canvas=(8, 4),
        profile="adobe",
        arguments={"scale": 2.0},
    ),
    scenario("offsets", [photo_layer(offsets=[5, 3])], canvas=(40, 30), arguments={"scale": 2.0}),
    scenario("in-group", [photo_layer(group="Group")], arguments={"scale": 2.0}),
    scenario("selection", [photo_layer()], select=[4, 3, 10, 8], arguments={"scale": 2.0}),
    scenario(
        "two-layers",
        [photo_layer("lower", seed=1), photo_layer("upper", size=(16, 12), seed=2, offsets=[2, 2])],
        targets=["lower", "upper"],
        arguments={"scale": 2.0},
    ),
    scenario(
        "new-image",
        [photo_layer(offsets=[3, 1])],
        canvas=(30, 24),
        arguments={"scale": 2.0, "output": "new-image"},
        file="photo.xcf",  # as if opened from it (GIMP 3.0 sets only XCF files from a plug-in)
        files_beside=["photo × 2.xcf"],  # an earlier result, which Save must not overwrite
    ),
    scenario("indexed", [photo_layer()], indexed=True, arguments={"scale": 2.0}),
    scenario("look", [photo_layer(mask="left-half", opacity=40.0, mode="MULTIPLY")], arguments={"scale": 2.0}),
    scenario(
        "look-selection", [photo_layer(mask="left-half", opacity=40.0)], select=[4, 3, 10, 8], arguments={"scale": 2.0}
    ),
    scenario("hidden", [photo_layer(visible=False)], arguments={"scale": 2.0}),
    scenario(
        "new-image-order",
        [photo_layer("lower", seed=1), photo_layer("upper", size=(16, 12), seed=2, offsets=[2, 2])],
        targets=["upper", "lower"],
        arguments={"scale": 2.0, "output": "new-image"},
    ),
    scenario("repeat-selection", [photo_layer()], select=[4, 3, 10, 8], arguments={"scale": 2.0}, repeat=True),
    scenario("mask-target", [photo_layer(mask="left-half")], target_mask=True, arguments={"scale": 2.0}),
    scenario("in-place", [photo_layer(offsets=[3, 2])], canvas=(30, 24), arguments={"output": "in-place", "seed": 3}),
    scenario("in-place-selection", [photo_layer()], select=[4, 3, 10, 8], arguments={"output": "in-place"}),
    scenario("undo-group", [photo_layer()], record_calls=True),
    scenario("deleted-meanwhile", [photo_layer()], record_calls=True, delete_during="photo"),
    scenario(
        "group-deleted-meanwhile",
        [photo_layer(group="Group")],
        record_calls=True,
        delete_during="photo",
        delete_group=True,
    ),
    scenario("progress", [photo_layer(size=(64, 48))], canvas=(64, 48), record_calls=True, options={"tile": 32}),
    scenario("wrong-width", [photo_layer()], record_calls=True, tamper="width"),
    scenario("wrong-bytes", [photo_layer()], record_calls=True, tamper="bytes"),
]


@pytest.fixture(scope="module", params=VERSIONS)
def gimp(request):
    """Every scenario runs in each GIMP version the plug-in supports."""
    with GimpRunner.find_or_build(request.param) as runner:
        yield runner


@pytest.fixture(autouse=True)
def gimp_python_is_this_one(monkeypatch):
    """Where a test installs the plug-in but runs no GIMP, this Python (which has pyzmq) stands for GIMP's:
    the installer then has no pyzmq to fetch. Tests of GIMP's own Python name it themselves."""
    monkeypatch.setenv("INVSR_GIMP_PYTHON", sys.executable)


@pytest.fixture(scope="module")
def workspace(gimp, tiny_weights):
    folder = gimp.workspace()
    shutil.copytree(tiny_weights.noise_predictor.parent, folder / "weights")  # where GIMP's side can read it
    (folder / "cache").mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def worker(workspace):
    # the default endpoint, as a user's worker has it: an ipc socket that GIMP reaches inside its chroot
    process = WorkerProcess(workspace / "run", workspace / "weights", "--preload", bind=None).wait_ready()
    yield process
    process.stop()


def run_gimp(gimp, workspace, name, scenarios, env=None, installed=None, screen=False, config=None):
    """Run scenarios in GIMP; the plug-in from the source tree, or from `installed` (a plug-ins folder);
    GIMP's configuration in `config` (kept from one run to the next), else a new one."""
    out = workspace / name
    out.mkdir()
    plan = {
        "out": gimp.inside(out),
        "plugin": gimp.inside(installed / "invsr-upscale" if installed else PLUGINS / "invsr-upscale"),
        "connection_file": gimp.inside(workspace / "run" / "worker.json"),
        "screenshot": gimp.inside(REPO / "tests" / "gimp" / "screenshot.py"),
        "scenarios": scenarios,
    }
    (out / "plan.json").write_text(json.dumps(plan))
    variables = {
        "INVSR_SCENARIOS": gimp.inside(out / "plan.json"),
        "INVSR_CACHE": gimp.inside(workspace / "cache"),
        **(env or {}),
    }
    if installed:
        (out / "gimp-config").mkdir()
        (out / "gimp-config" / "plug-ins").symlink_to(gimp.inside(installed))  # as GIMP sees it
    try:
        done = gimp.run_batch(
            SCENARIOS,
            out,
            variables,
            plugin_path=None if installed else PLUGINS,
            timeout=300 if screen else 600,  # a screen: 9 dialogs in one run take 2 min on 2 loaded cores
            screen=screen,
            config=config,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"GIMP ran past {timeout.timeout} s; {how_far(out, scenarios)}\n{timeout.stderr[-3000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out / "gimp-stderr.txt").write_text(done.stderr)
    results = json.loads((out / "results.json").read_text())
    for case, result in results.items():
        assert "crash" not in result, f"{case}:\n{result['crash']}"
        assert STUCK not in (result["answers"] or ""), f"{case}: a window was left open\n{result['answers']}"
    return out, results


STUCK = "stuck:"  # scenarios.py's mark, in a scenario's answers, of a window its steps left open (closed after)


def how_far(out, scenarios) -> str:
    """What a run that did not end had done: the scenarios that ended, and how the next was answered."""
    try:
        ended = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        ended = {}
    names = [case["name"] for case in scenarios]
    running = next((name for name in names if name not in ended), None)
    log = out / f"answers-{running}.log"
    answers = log.read_text()[-3000:] if log.exists() else "(no answers log)"
    return f"ended: {', '.join(ended) or 'none'}; then {running}, answered:\n{answers}"


def answered(result: dict) -> str:
    """A scenario's error, and how its dialog was answered (the commands as they ran), for a failure's message."""
    return f"{result['error']}\n{result.get('answers') or ''}"


@pytest.fixture(scope="module")
def main_run(gimp, workspace, worker):
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }
    return run_gimp(gimp, workspace, "main", [*MAIN, dead_worker_scenario(gimp, workspace)], env)


def dead_worker_scenario(gimp, workspace):
    """The Worker field names a connection file whose process is gone."""
    from invsr.wire import connection

    dead = workspace / "dead-worker.json"
    connection.write(
        dead, connection.Connection(endpoint="tcp://127.0.0.1:9", key="00" * 32, pid=999999, protocol="2.0")
    )
    return scenario("dead-worker", [photo_layer()], arguments={"scale": 2.0, "server": gimp.inside(dead)})


def pixels(folder, layer) -> np.ndarray:
    raw = (folder / layer["pixels"]).read_bytes()
    width, height = layer["size"]
    return np.frombuffer(raw, dtype=NUMPY_DTYPES[layer["dtype"]]).reshape(height, width, layer["channels"])


def same_image(folder, before, after) -> bool:
    """The same size, layers, offsets and pixels (pixel files compared by content)."""

    def essence(described):
        layers = [{k: v for k, v in layer.items() if k != "pixels"} for layer in described["layers"]]
        contents = [
            (folder / layer["pixels"]).read_bytes() if "pixels" in layer else None for layer in described["layers"]
        ]
        return described["size"], layers, contents

    return essence(before) == essence(after)


def by_name(described, name):
    return next(layer for layer in described["layers"] if layer["name"] == name)


def expected(pipeline, source: np.ndarray, arguments: dict) -> np.ndarray:
    request = UpscaleRequest(
        scale=arguments.get("scale", 4.0),
        steps=arguments.get("steps", 1),
        seed=arguments.get("seed", 0),
        color_fix=arguments.get("color-fix", "wavelet"),
    )
    return pipeline.upscale(source, request).image


def check_lossless(main_run, pipeline, name, source_name="photo", crop=None):
    folder, results = main_run
    result, case = results[name], next(s for s in MAIN if s["name"] == name)
    assert result["status"] == "success", result["error"]
    source = pixels(folder, by_name(result["before"], source_name))
    if crop:
        x, y, w, h = crop
        source = source[y : y + h, x : x + w]
    upscaled = by_name(result["after"], f"{source_name} (InvSR ×{case['arguments']['scale']:.3g})")
    np.testing.assert_array_equal(
        pixels(folder, upscaled), expected(pipeline, source, case["arguments"]).reshape(pixels(folder, upscaled).shape)
    )
    return result, upscaled


@pytest.mark.parametrize("name", ["rgb8", "rgba8", "gray8", "gray-alpha16", "rgb16", "float"])
def test_every_layer_type_and_precision_round_trips_exactly(main_run, pipeline, name):
    result, upscaled = check_lossless(main_run, pipeline, name)
    case = next(s for s in MAIN if s["name"] == name)
    width, height = case["canvas"]
    scale = case["arguments"]["scale"]
    assert result["after"]["size"] == [round(width * scale), round(height * scale)]
    assert upscaled["size"] == [round(24 * scale), round(20 * scale)]


def test_linear_precision_goes_through_the_perceptual_encoding(main_run, pipeline):
    folder, results = main_run
    result = results["float-linear"]
    assert result["status"] == "success", result["error"]
    source = by_name(result["before"], "photo")
    assert source["encoding"].startswith("R~G~B~") and source["dtype"] == "f32"
    upscaled = by_name(result["after"], "photo (InvSR ×2)")
    want = expected(pipeline, pixels(folder, source), {"scale": 2.0})
    np.testing.assert_allclose(pixels(folder, upscaled), want, atol=1e-5)  # float round trip through linear storage


@pytest.mark.parametrize("name, tolerance", [("half", 1e-3), ("u32", 1e-6), ("double", 1e-6)])
def test_other_precisions_travel_as_float_and_come_back_in_their_own(main_run, pipeline, name, tolerance):
    folder, results = main_run
    result = results[name]
    assert result["status"] == "success", result["error"]
    source = by_name(result["before"], "photo")
    assert source["dtype"] == "f32"
    upscaled = by_name(result["after"], "photo (InvSR ×2)")
    want = expected(pipeline, pixels(folder, source), {"scale": 2.0}).reshape(pixels(folder, upscaled).shape)
    np.testing.assert_allclose(pixels(folder, upscaled), want, atol=tolerance)  # rounded to the layer's own precision


def test_wide_gamut_colours_survive(main_run, pipeline):
    folder, results = main_run
    result = results["adobe-rgb"]
    source = pixels(folder, by_name(result["before"], "photo"))
    assert source[0, 0].tolist() == [0, 255, 0] and source[-1, -1].tolist() == [255, 0, 0]  # not clipped to sRGB
    check_lossless(main_run, pipeline, "adobe-rgb")


def test_layer_offsets_are_respected(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "offsets")
    assert by_name(result["after"], "photo")["offsets"] == [10, 6]
    assert upscaled["offsets"] == [10, 6]


def test_a_layer_in_a_group_gets_its_result_in_the_same_group_above_it(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "in-group")
    assert upscaled["parent"] == "Group"
    names = [layer["name"] for layer in result["after"]["layers"] if layer["parent"] == "Group"]
    assert names == ["photo (InvSR ×2)", "photo"]


def test_only_the_selected_area_is_upscaled(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "selection", crop=(4, 3, 10, 8))
    assert upscaled["size"] == [20, 16] and upscaled["offsets"] == [8, 6]
    assert by_name(result["after"], "photo")["visible"] is True  # it still shows outside the selection
    assert upscaled["mask"] is True  # visible only inside the (scaled) selection
    assert upscaled["parasite"]["source_region"] == [4, 3, 10, 8]


def test_the_result_takes_its_sources_place_in_the_composition(main_run, pipeline):
    """Mode, opacity and the (scaled) mask carry over, and the source, wholly covered, is hidden."""
    result, upscaled = check_lossless(main_run, pipeline, "look")
    source = by_name(result["after"], "photo")
    assert (upscaled["mode"], upscaled["opacity"], upscaled["visible"]) == ("multiply", 40.0, True)
    assert source["visible"] is False and source["mask"] is True
    assert upscaled["mask_pixels"] == source["mask_pixels"]  # GIMP's own scaling of the source's mask
    assert result["after"]["selection"] is None


def test_with_a_selection_the_mask_is_both_and_the_source_stays_visible(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "look-selection", crop=(4, 3, 10, 8))
    source = by_name(result["after"], "photo")
    assert source["visible"] is True and upscaled["opacity"] == 40.0
    source_mask = np.array(source["mask_pixels"]).reshape(40, 48)
    result_mask = np.array(upscaled["mask_pixels"]).reshape(16, 20)
    under = source_mask[6:22, 8:28]
    assert (result_mask <= under).all()  # the intersection: never more than the source's mask
    np.testing.assert_array_equal(result_mask[1:-1, 1:-1], under[1:-1, 1:-1])  # inside the scaled selection's soft edge
    assert result_mask[1:-1, 1].min() == 255 and result_mask[:, -1].max() == 0  # the source mask's edge is in it
    plain = main_run[1]["selection"]["after"]["selection"]  # GIMP's scaling of the same selection, no mask involved
    assert result["after"]["selection"] == plain and plain is not None  # the user's selection, as it was


def test_after_a_selection_the_result_layer_is_selected_so_that_filters_repeat_works(main_run):
    """Not its mask: Filters > Repeat runs on what is selected, and a mask cannot be upscaled."""
    result = main_run[1]["repeat-selection"]
    assert result["status"] == "success", result["error"]
    assert result["selected"] == [["layer", "photo (InvSR ×2)"]]
    assert result["repeated"] == {"status": "success", "error": None, "size": [96, 80]}
    names = [layer["name"] for layer in result["after"]["layers"]]
    assert names == ["photo (InvSR ×4)", "photo (InvSR ×2)", "photo"]  # named from its source: not stacked


def test_a_selected_layer_mask_upscales_its_layer(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "mask-target")
    assert upscaled["mask"] is True and result["selected"] == [["layer", "photo (InvSR ×2)"]]


def test_enhance_in_place_keeps_the_image_size_and_adds_the_detail_as_a_layer(main_run, pipeline):
    """Scale 1: the model's detail at the original size, over the layer, or over the selection with its mask."""
    folder, results = main_run
    for name, crop, offsets in (("in-place", None, [3, 2]), ("in-place-selection", (4, 3, 10, 8), [4, 3])):
        result = results[name]
        assert result["status"] == "success", result["error"]
        assert result["after"]["size"] == result["before"]["size"]
        source = pixels(folder, by_name(result["before"], "photo"))
        if crop:
            x, y, w, h = crop
            source = source[y : y + h, x : x + w]
        layer = by_name(result["after"], "photo (InvSR detail)")
        assert layer["size"] == [source.shape[1], source.shape[0]] and layer["offsets"] == offsets
        assert layer["mask"] is bool(crop) and layer["parasite"]["scale"] == 1.0
        seed = next(s for s in MAIN if s["name"] == name)["arguments"].get("seed", 0)
        np.testing.assert_array_equal(pixels(folder, layer), expected(pipeline, source, {"scale": 1.0, "seed": seed}))
        assert by_name(result["after"], "photo")["visible"] is bool(crop)  # covered wholly, the source is hidden
        assert result["selected"] == [["layer", "photo (InvSR detail)"]]


def test_a_hidden_layer_gives_a_hidden_result(main_run, pipeline):
    result, upscaled = check_lossless(main_run, pipeline, "hidden")
    assert upscaled["visible"] is False and by_name(result["after"], "photo")["visible"] is False


def test_the_image_changes_nothing_when_the_layer_went_away_during_the_upscale(main_run):
    for name in ("deleted-meanwhile", "group-deleted-meanwhile"):
        result = main_run[1][name]
        assert "closed or deleted during the upscale; nothing was changed" in result["error"]
        assert result["size_after"] == [24, 20]
        assert not {"undo_group_start", "scale", "insert_layer"} & {call[0] for call in result["calls"]}


def test_a_result_not_of_the_size_asked_for_never_reaches_the_image(main_run):
    """The worker's real result, one column wider or a row of pixels short: refused, the image untouched."""
    expected = {
        "wrong-width": "the worker returned rows of (49, 3, 'u8'), expected (48, 3, 'u8'); nothing was changed",
        "wrong-bytes": "the result holds 5616 bytes, expected 5760; nothing was changed",
    }
    for name, message in expected.items():
        result = main_run[1][name]
        assert message in result["error"], result["error"]
        assert result["size_after"] == [24, 20]
        assert not {"undo_group_start", "scale", "insert_layer"} & {call[0] for call in result["calls"]}


def test_two_selected_layers_are_both_upscaled(main_run, pipeline):
    check_lossless(main_run, pipeline, "two-layers", source_name="lower")
    result, upscaled = check_lossless(main_run, pipeline, "two-layers", source_name="upper")
    assert upscaled["offsets"] == [4, 4]
    assert [layer["name"] for layer in result["after"]["layers"]] == [
        "upper (InvSR ×2)",
        "upper",
        "lower (InvSR ×2)",
        "lower",
    ]


def test_new_image_output_leaves_the_image_alone(main_run, pipeline):
    folder, results = main_run
    result = results["new-image"]
    assert result["status"] == "success", result["error"]
    assert result["after"]["size"] == result["before"]["size"] == [30, 24]
    assert [layer["name"] for layer in result["after"]["layers"]] == ["photo"]
    (created,) = result["new_images"]
    layer = by_name(created, "photo (InvSR ×2)")
    assert created["size"] == [48, 40] and layer["offsets"] == [0, 0]
    assert created["name"] == "photo × 2 (2).xcf"  # the window says "[photo × 2 (2)]", not "[Untitled]"
    source = pixels(folder, by_name(result["before"], "photo"))
    np.testing.assert_array_equal(pixels(folder, layer), expected(pipeline, source, {"scale": 2.0}))


def test_a_new_image_stacks_the_results_as_their_sources_whatever_the_selection_order(main_run):
    result = main_run[1]["new-image-order"]
    assert result["status"] == "success", result["error"]
    (created,) = result["new_images"]
    assert [layer["name"] for layer in created["layers"]] == ["upper (InvSR ×2)", "lower (InvSR ×2)"]
    assert created["name"] == "[Untitled]"  # its source has no file to be named after


def test_a_script_repeats_the_last_values_without_a_window(gimp, workspace, worker, pipeline):
    """Gimp.RunMode.WITH_LAST_VALS (batch tools, Repeat from a script) in gimp-console without a display, after
    a run in the dialog (on a virtual screen) that GIMP kept the values of: those values, no dialog, no window
    (the result is a new image, which a window would show), and the library's result."""
    if not gimp.has_screen:
        pytest.skip("the first run, whose values GIMP keeps, is in the dialog: xvfb-run and xdotool are needed")
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }
    arguments = {"scale": 1.5, "seed": 11, "output": "new-image", "size-by": "scale"}
    first = scenario("first", [photo_layer()], arguments=arguments, dialog=[["key", "Return"]])
    config = workspace / "last-values-config"
    _, results = run_gimp(gimp, workspace, "last-values-dialog", [first], env, screen=True, config=config)
    assert results["first"]["status"] == "success", results["first"]["error"]
    again = scenario("again", [photo_layer()], mode="WITH_LAST_VALS")  # no arguments: GIMP's last values
    folder, results = run_gimp(gimp, workspace, "last-values", [again], env, config=config)
    result = results["again"]
    assert result["status"] == "success", result["error"]
    assert same_image(folder, result["before"], result["after"])
    (created,) = result["new_images"]
    want = expected(pipeline, pixels(folder, by_name(result["before"], "photo")), arguments)
    np.testing.assert_array_equal(pixels(folder, by_name(created, "photo (InvSR ×1.5)")), want)


ALL_IMAGES = [  # open at once: Upscale All Open Images does each; the indexed one is left out, named
    scenario("photo", [photo_layer(seed=3)]),
    scenario(
        "two-layers",
        [photo_layer("lower", seed=1), photo_layer("upper", size=(16, 12), seed=2, offsets=[2, 2])],
        targets=["upper"],  # selected; "every layer" does the other too
    ),
    scenario("indexed", [photo_layer()], indexed=True),
]


def test_upscale_all_open_images_does_each_image_in_its_own_undo_group_and_names_those_left_out(
    gimp, workspace, worker, pipeline
):
    """In one GIMP: the procedure through the PDB, without a dialog, on every layer of each image, whose results
    are the library's; then its work function in the plug-in's place, on the selected layers, its calls recorded:
    one undo group per image, each closed before the next image's upscale starts (so a Cancel, which ends the
    plug-in, leaves the images not yet done as they were), and one progress bar over all of them. Where a
    virtual screen is, its dialog too: Layers (alt+y) moved to "Every layer", and Upscale."""
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }
    arguments = {"layers": "every", "scale": 2.0, "seed": 4}
    cases = [
        dict(name="every", images=ALL_IMAGES, arguments=arguments),
        dict(name="selected", images=ALL_IMAGES, arguments={"layers": "selected"}, record_calls=True),
        dict(name="too-wide", images=ALL_IMAGES[:2], arguments={"size-by": "width", "pixels": 1000}),  # 41x: no
    ]
    in_dialog = [["key", "alt+y"], ["key", "Down"], ["key", "alt+u"]]
    if gimp.has_screen:
        arguments_shown = {"layers": "selected", "scale": 2.0, "size-by": "scale", "output": "scale-image"}
        cases.append(dict(name="dialog", images=ALL_IMAGES[1:2], arguments=arguments_shown, dialog=in_dialog))
    folder, results = run_gimp(gimp, workspace, "all-images", cases, env, screen=gimp.has_screen)
    every = results["every"]
    assert every["status"] == "success" and every["opened"] == 0, every["error"]
    before, after = every["before"], every["after"]
    for image, source_name in [("photo", "photo"), ("two-layers", "lower"), ("two-layers", "upper")]:
        source = pixels(folder, by_name(before[image], source_name))
        upscaled = by_name(after[image], f"{source_name} (InvSR ×2)")
        np.testing.assert_array_equal(pixels(folder, upscaled), expected(pipeline, source, arguments))
    assert after["photo"]["size"] == after["two-layers"]["size"] == [48, 40]
    names = [layer["name"] for layer in after["two-layers"]["layers"]]
    assert names == ["upper (InvSR ×2)", "upper", "lower (InvSR ×2)", "lower"]
    assert after["indexed"] == before["indexed"]
    stderr = (folder / "gimp-stderr.txt").read_text()
    assert "2 of 3 images were upscaled. Not upscaled:" in stderr and "indexed image" in stderr, stderr[-2000:]

    too_wide = results["too-wide"]  # said before anything starts, naming the image (the first it finds)
    assert too_wide["status"] == "execution-error"
    assert all(same_image(folder, too_wide["before"][name], too_wide["after"][name]) for name in too_wide["before"])
    assert re.match(r"\[Untitled\]-\d+: A width of 1,000 pixels is 41.7 times", too_wide["error"]), too_wide["error"]

    recorded = results["selected"]
    labels = recorded["labels"]
    assert recorded["done"] == 2 and [label for label, _ in recorded["left_out"]] == [labels["indexed"]]
    assert "Convert this indexed image first" in recorded["left_out"][0][1]
    changes = [call[:3] for call in recorded["calls"] if not call[0].startswith("progress")]
    assert changes == [
        ["upscale_regions", "photo", ["photo"]],
        ["undo_group_start", "photo"],
        ["scale", "photo"],
        ["insert_layer", "photo"],
        ["undo_group_end", "photo"],
        ["upscale_regions", "two-layers", ["upper"]],  # the selected layer only
        ["undo_group_start", "two-layers"],
        ["scale", "two-layers"],
        ["insert_layer", "two-layers"],
        ["undo_group_end", "two-layers"],
    ]
    progress = [call for call in recorded["calls"] if call[0].startswith("progress")]
    assert progress[0][0] == "progress_init" and progress[0][1].startswith("Upscaling 2 images with InvSR: ")
    assert progress[-1] == ["progress_end"] and [call[0] for call in progress].count("progress_init") == 1
    fractions = [call[1] for call in progress if call[0] == "progress_update"]
    assert fractions == sorted(fractions) and 0.5 in fractions and fractions[-1] == 1.0  # image 1: half the work
    texts = [call[1] for call in progress if call[0] == "progress_set_text"]
    assert "InvSR: image 1/2: done" in texts and texts[-1] == "InvSR: image 2/2: done"

    if gimp.has_screen:  # both layers, though one was selected: the dialog's choice, kept as GIMP's last value
        shown = results["dialog"]
        assert shown["status"] == "success", shown["error"]
        names = [layer["name"] for layer in shown["after"]["two-layers"]["layers"]]
        assert names == ["upper (InvSR ×2)", "upper", "lower (InvSR ×2)", "lower"]
        last = folder / "gimp-config" / "plug-in-settings" / "GimpProcedureConfigRun-python-fu-invsr-upscale-all.last"
        assert '(layers "every")' in last.read_text()
        assert "mnemonic" not in stderr, [line for line in stderr.splitlines() if "mnemonic" in line]


def test_result_layer_records_how_it_was_made(main_run):
    _, results = main_run
    record = by_name(results["rgb8"]["after"], "photo (InvSR ×2)")["parasite"]
    assert record["seed"] == 5 and record["steps"] == 1 and record["timesteps"] == [200]
    assert record["color_fix"] == "wavelet" and record["scale"] == 2.0 and record["version"]
    assert record["weights"]["tiny_random"] is True and "InvSR" in record["model"]


def test_indexed_images_get_a_clear_message_and_stay_unchanged(main_run):
    _, results = main_run
    result = results["indexed"]
    assert result["status"] == "execution-error"
    assert "indexed" in result["error"] and "Image > Mode > RGB" in result["error"]
    assert same_image(main_run[0], result["before"], result["after"])


def test_all_changes_are_one_undo_group_after_the_result_is_in(main_run):
    _, results = main_run
    changes = [call[0] for call in results["undo-group"]["calls"] if not call[0].startswith("progress")]
    assert changes == ["undo_group_start", "scale", "insert_layer", "undo_group_end"]


def test_the_progress_bar_counts_the_tiles_then_says_what_is_left_to_do(main_run):
    """A 64 x 48 layer in 32-pixel tiles: GIMP's bar moves forward tile by tile, says when the worker
    assembles and sends the result and when the plug-in writes it, and closes after the image changed."""
    calls = main_run[1]["progress"]["calls"]
    names = [call[0] for call in calls]
    assert names[0] == "progress_init" and re.fullmatch(r"Upscaling with InvSR: \d+ tiles, about\s\d+\ss", calls[0][1])
    fractions = [call[1] for call in calls if call[0] == "progress_update"]
    texts = [call[1] for call in calls if call[0] == "progress_set_text"]
    assert len(fractions) >= 4 and fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] == 1.0
    counted = [text for text in texts if text.startswith("InvSR: tile ")]
    tiles = int(counted[0].split("/")[1].split(",")[0])
    assert tiles >= 4 and len(counted) >= 3 and any(re.search(r", about\s\d+\ss left$", text) for text in counted)
    assert texts[-3:] == [
        f"InvSR: all {tiles} tiles done, assembling the result",
        "InvSR: receiving the result",
        "InvSR: adding the result to the image",
    ]
    last_text = max(i for i, name in enumerate(names) if name == "progress_set_text")
    assert (
        last_text
        < names.index("undo_group_start")
        < names.index("undo_group_end")
        < names.index("progress_end")
        == len(names) - 1
    )


# In the dialog: Size by (alt+z) moved down to "Width in pixels", Pixels (alt+x) typed over: 60 for a 24-pixel width;
# Tab leaves the field (which takes the value), and Upscale (alt+u).
BY_WIDTH = [
    ["key", "alt+z"],
    ["key", "Down"],
    ["key", "alt+x"],
    ["key", "ctrl+a"],
    ["type", "60"],
    ["key", "Tab"],
    ["shot", "by-width"],
    ["key", "alt+u"],
]


# Scale (alt+a) typed over: 16, for a 640 x 640 image, is a 10240 x 10240 result (105 megapixels).
SCALE_16 = [["key", "alt+a"], ["key", "ctrl+a"], ["type", "16"], ["key", "Tab"], ["shot", "scale-16"], ["key", "alt+u"]]


# After by-width, Size by (alt+z) moved down to "Height in pixels", 9999 typed into Pixels (alt+x): more than 16
# times the layer's 20 pixels. Return and Alt+U must do nothing while Upscale is disabled; Escape then cancels.
IMPOSSIBLE = [*BY_WIDTH[:4], ["type", "9999"], ["key", "Tab"], ["shot", "impossible"], ["key", "Return"]]
IMPOSSIBLE += [["key", "alt+u"], ["close", "Escape"]]
# The dialog back after "Choose a smaller size" (the windows on the screen listed in back.txt, its picture
# taken: Scale still 16), then closed.
SMALLER = [["window", "^Upscale [(]InvSR[)]$"], ["windows", "back"], ["shot", "back"], ["close", "Escape"]]
SPACE = r"(?:\s|\\302\\240)"  # a space, or a no-break one as GIMP writes it in its files (escaped UTF-8)

# Output (alt+t) moved down twice, to "Keep the size", and Upscale.
IN_PLACE = [["key", "alt+t"], ["key", "Down"], ["key", "Down"], ["shot", "in-place"], ["key", "alt+u"]]


def keep_screenshots(folder, tmp_path):
    """The pictures of the dialog a run took, copied where pytest keeps its files, to look at."""
    kept = tmp_path / "screenshots"
    kept.mkdir(exist_ok=True)
    for picture in [*folder.glob("*.png"), *folder.glob("*.log"), *folder.glob("*.txt")]:
        shutil.copy(picture, kept / picture.name)
    return kept


def test_the_dialog_opens_and_ok_upscales_with_its_values_cancel_changes_nothing(
    gimp, workspace, worker, pipeline, tmp_path
):
    """The real plug-in, run interactively on a virtual screen, its dialog answered with the keyboard."""
    if not gimp.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }
    arguments = {
        "scale": 2.0,
        "seed": 7,
        "server": gimp.inside(workspace / "run" / "worker.json"),
        "pixels": 3840,
        "size-by": "scale",
    }  # the dialog's initial values
    dialogs = [
        scenario("ok", [photo_layer()], arguments=arguments, dialog=[["shot", "dialog"], ["key", "Return"]]),
        scenario("cancel", [photo_layer()], arguments=arguments, dialog_key="Escape"),
        scenario("channel", [photo_layer()], target_channel=True, arguments=arguments, dialog_key="Escape"),
        scenario(
            "advanced",
            [photo_layer()],
            arguments=arguments,
            dialog=[["key", "alt+v"], ["shot", "advanced"], ["key", "alt+c"]],
        ),
        scenario(
            "large",
            [photo_layer(size=(640, 640))],
            canvas=(640, 640),
            arguments=arguments,
            dialog=SCALE_16 + [["window", "a large job$"], ["shot", "large-job"], ["close", "Escape"]],
        ),
        scenario(
            "smaller",  # after "large": the values of "ok" (scale, not in place)
            [photo_layer(size=(640, 640))],
            canvas=(640, 640),
            arguments=arguments,
            dialog=SCALE_16 + [["window", "a large job$"], ["key", "alt+s"], *SMALLER],
        ),
        scenario("by-width", [photo_layer()], arguments=arguments, dialog=BY_WIDTH),
        scenario(
            "impossible", [photo_layer()], arguments=arguments, dialog=IMPOSSIBLE
        ),  # after by-width: by pixels, not in place
        scenario("in-place", [photo_layer()], arguments=arguments, dialog=IN_PLACE),
    ]
    try:
        folder, results = run_gimp(gimp, workspace, "dialog", dialogs, env, screen=True)
    finally:
        keep_screenshots(workspace / "dialog", tmp_path)
    ok, cancel = results["ok"], results["cancel"]
    channel = results["channel"]  # said before the dialog opens (else Escape would have cancelled it)
    assert channel["status"] == "execution-error" and "A channel cannot be upscaled" in channel["error"]
    assert ok["status"] == "success", answered(ok)
    source = pixels(folder, by_name(ok["before"], "photo"))
    np.testing.assert_array_equal(
        pixels(folder, by_name(ok["after"], "photo (InvSR ×2)")), expected(pipeline, source, {"scale": 2.0, "seed": 7})
    )
    assert cancel["status"] == "cancel" and same_image(folder, cancel["before"], cancel["after"]), answered(cancel)
    advanced = results["advanced"]  # Advanced opened (its picture taken), then Escape
    assert advanced["status"] == "cancel", answered(advanced)
    by_width = results["by-width"]  # the target as a width, typed: the image becomes 60 pixels wide
    assert by_width["status"] == "success", answered(by_width)
    assert by_width["after"]["size"] == [60, 50] and by_name(by_width["after"], "photo (InvSR ×2.5)")
    in_place = results["in-place"]  # the image keeps its size; the detail comes as a layer
    assert in_place["status"] == "success" and in_place["after"]["size"] == [24, 20], answered(in_place)
    assert by_name(in_place["after"], "photo (InvSR detail)")["size"] == [24, 20]
    large = results["large"]  # asked about before it starts, and cancelled there
    assert large["status"] == "cancel" and same_image(folder, large["before"], large["after"]), answered(large)
    smaller = results["smaller"]  # "Choose a smaller size": the dialog again, the question gone; then Escape
    assert smaller["status"] == "cancel" and same_image(folder, smaller["before"], smaller["after"]), smaller
    assert (folder / "back.txt").read_text().splitlines() == ["Upscale (InvSR)"]
    impossible = results["impossible"]  # Return and Alt+U did nothing while the width was impossible; then Escape
    assert impossible["status"] == "cancel", answered(impossible)
    # the line under the size fields followed the last change, Output to "Keep the size" after a 60-pixel width:
    # GIMP keeps its last text with the dialog's values
    last = folder / "gimp-config" / "plug-in-settings" / "GimpProcedureConfigRun-python-fu-invsr-upscale.last"
    kept = last.read_text()
    assert re.search(rf'\(estimate "Result: 24 \S+ 20 pixels, 1 tile, about{SPACE}\d+{SPACE}(s|min)"\)', kept), kept
    stderr = (folder / "gimp-stderr.txt").read_text()
    assert "mnemonic" not in stderr, [
        line for line in stderr.splitlines() if "mnemonic" in line
    ]  # each underlined letter once


def test_the_dialog_fits_a_768_pixel_screen_in_every_state_and_shrinks_back(gimp, workspace, worker, tmp_path):
    """A laptop's 768 pixels, less a panel and the title bar: the dialog with Advanced and Preview open, with
    one of them, and back to neither, where it is as small as it was at first (no rows spread apart)."""
    if not gimp.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    env = {"INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"), "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "x")}
    arguments = {"scale": 2.0, "server": gimp.inside(workspace / "run" / "worker.json"), "size-by": "scale"}
    steps = [["size", "closed"], ["key", "alt+v"], ["size", "advanced"], ["key", "alt+p"], ["sleep", 3]]
    steps += [["size", "both"], ["shot", "both"], ["key", "alt+v"], ["size", "preview"], ["key", "alt+p"]]
    steps += [["size", "neither"], ["close", "Escape"]]
    case = scenario("sizes", [photo_layer(size=(640, 480))], canvas=(640, 480), arguments=arguments, dialog=steps)
    try:
        folder, results = run_gimp(gimp, workspace, "sizes", [case], env, screen=True)
    finally:
        keep_screenshots(workspace / "sizes", tmp_path)
    assert results["sizes"]["status"] == "cancel"
    size = {name: tuple(map(int, (folder / f"{name}.txt").read_text().split())) for name in SIZES}
    assert all(height <= MAX_DIALOG_HEIGHT for _, height in size.values()), size
    assert size["advanced"][1] > size["closed"][1] and size["preview"][0] > size["closed"][0], size  # they opened
    shrunk, first = size["neither"], size["closed"]  # no larger than at first (its lines may wrap otherwise now)
    assert shrunk[1] <= first[1] and shrunk[0] <= first[0], size


SIZES = ("closed", "advanced", "both", "preview", "neither")
MAX_DIALOG_HEIGHT = 768 - 32 - 36  # a 768-pixel screen, less a top panel and a window's title bar


UPSCALE_AT_ONCE = [["key", "alt+p"], ["key", "alt+u"]]


def screenshot(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def found_in(picture: np.ndarray, block: np.ndarray) -> bool:
    """Whether `block` appears in `picture` exactly, pixel for pixel, somewhere."""
    height, width = block.shape[:2]
    corner = picture[: picture.shape[0] - height + 1, : picture.shape[1] - width + 1]
    ys, xs = np.nonzero(np.all(corner == block[0, 0], -1))
    return any(np.array_equal(picture[y : y + height, x : x + width], block) for y, x in zip(ys, xs))


def after_the_divider(block: np.ndarray) -> np.ndarray:
    """What the before | after split shows of InvSR's `block`, its divider in the middle (split_view.py)."""
    width = block.shape[1]
    divider = min(width - 1, max(1, round(0.5 * width)))
    return np.ascontiguousarray(block[:, divider + 1 :])


def test_the_preview_shows_the_workers_upscale_of_an_area_the_user_moves(
    gimp, workspace, worker, pipeline, photo, tmp_path
):
    """The dialog's Preview on a virtual screen: what it shows is, pixel for pixel, the library's upscale of
    a tile of the layer around the area chosen, with the dialog's settings; it follows the area and the scale."""
    if not gimp.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    sys.path.insert(0, str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import preview

    layer = np.pad(photo, ((36, 36), (86, 86), (0, 0)), mode="reflect")  # 300 x 200, the sample photo in the middle
    blocks = {}
    for name, centre, scale in [("preview", (150, 100), 4.0), ("moved", (182, 100), 4.0), ("x2", (182, 100), 2.0)]:
        crop = preview.crop_at(preview.Area(0, 0, 300, 200), centre, scale, 0)
        sent, shown = crop.sent, crop.shown
        upscaled = expected(
            pipeline, layer[sent.y : sent.y + sent.height, sent.x : sent.x + sent.width], {"scale": scale, "seed": 7}
        )
        block = upscaled[shown.y : shown.y + shown.height, shown.x : shown.x + shown.width]
        blocks[name] = after_the_divider(block)  # the right part of the before | after split: InvSR's
    # The divider moved to the left edge with the arrow keys: all of it InvSR's but the focus frame's 2 pixels
    blocks["divided"] = np.ascontiguousarray(block[2:-2, 3:-2])
    for name, block in blocks.items():
        (workspace / f"{name}.raw").write_bytes(block.tobytes())

    def shot_when_shown(name):
        height, width = blocks[name].shape[:2]
        return ["shot-when-shown", [name, gimp.inside(workspace / f"{name}.raw"), width, height, 90]]

    # The Preview ticked (alt+p): the centre of the layer; then its area moved right by two steps of the arrow
    # keys (the area's mnemonic, alt+m, gives it the keyboard); then the scale typed over; then the split's
    # divider (alt+b gives it the keyboard) moved to the left.
    steps = [["key", "alt+p"], shot_when_shown("preview"), ["key", "alt+m"], ["key", "Right Right"]]
    steps += [shot_when_shown("moved"), ["key", "alt+a"], ["key", "ctrl+a"], ["type", "2"], ["key", "Tab"]]
    steps += [shot_when_shown("x2"), ["key", "alt+b"], ["key", " ".join(["Left"] * 12)], shot_when_shown("divided")]
    steps += [["key", "Escape"]]
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "absent.json"),
    }
    arguments = {"scale": 4.0, "seed": 7, "server": gimp.inside(workspace / "run" / "worker.json"), "size-by": "scale"}
    photo_spec = photo_layer(size=(300, 200), pixels=list(layer.tobytes()))
    cases = [  # the preview (cancelled: GIMP keeps the Preview box unticked), then Upscale pressed as soon as the
        # Preview is ticked, while the preview is under way
        scenario("preview", [photo_spec], canvas=(300, 200), arguments=arguments, dialog=steps),
        scenario("upscale-at-once", [photo_layer()], arguments=dict(arguments, scale=2.0), dialog=UPSCALE_AT_ONCE),
    ]
    try:
        folder, results = run_gimp(gimp, workspace, "preview", cases, env, screen=True)
    finally:
        kept = keep_screenshots(workspace / "preview", tmp_path)
    at_once = results["upscale-at-once"]  # the preview's job gave way, and its thread did not hold GIMP up
    assert at_once["status"] == "success", answered(at_once)
    source = pixels(folder, by_name(at_once["before"], "photo"))
    np.testing.assert_array_equal(
        pixels(folder, by_name(at_once["after"], "photo (InvSR ×2)")),
        expected(pipeline, source, {"scale": 2.0, "seed": 7}),
    )
    result = results["preview"]
    assert result["status"] == "cancel" and same_image(folder, result["before"], result["after"])
    for name, block in blocks.items():
        assert found_in(screenshot(kept / f"{name}.png"), block), f"{name}: not the expected upscale (see {kept})"


NO_WORKER = {  # a start command (None: no settings, a plug-in not installed by `invsr gimp install`), what is said
    "fails": (
        ["python3", "-c", "import sys; sys.exit('simulated: the GPU driver is missing')"],
        ["The InvSR worker could not start.", "simulated: the GPU driver is missing", "Fix what it names, then"],
    ),
    "gone": (
        ["/moved/venv/bin/python", "-m", "invsr_server", "serve"],
        ["cannot start the InvSR worker: /moved/venv/bin/python is missing", "run: invsr gimp install. Then"],
    ),
    "not-installed": (None, ["this copy of the plug-in cannot start one", "run: invsr gimp install. Then restart"]),
}


def test_no_worker_and_none_startable_leaves_the_image_unchanged(gimp, workspace):
    """No worker running, and the one the settings name cannot start (each case in the same GIMP run: the
    plug-in reads its settings file at each call)."""
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "empty-run"),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "no-worker-settings.json"),
    }
    cases = [
        scenario(case, [photo_layer()], arguments={"scale": 2.0}, settings=command and {"start_command": command})
        for case, (command, _) in NO_WORKER.items()
    ]
    folder, results = run_gimp(gimp, workspace, "no-worker", cases, env)
    for case, (_, says) in NO_WORKER.items():
        result = results[case]
        assert result["status"] == "execution-error", case
        assert all(text in result["error"] for text in says), result["error"]
        assert result["error"].endswith("upscale again.") and "`" not in result["error"]  # one action, plain words
        assert same_image(folder, result["before"], result["after"]), case


def test_a_worker_that_died_is_said_with_what_to_do(main_run):
    """The Worker field names a connection file whose process is gone: say so, and what to do, in words."""
    folder, results = main_run
    result = results["dead-worker"]
    assert result["status"] == "execution-error"
    assert result["error"] == (
        "The InvSR worker named in the Worker field stopped answering; nothing was changed. Start it again on its "
        "computer, then upscale again."
    )
    assert same_image(folder, result["before"], result["after"])


def test_missing_zmq_in_gimps_python_is_explained(gimp, workspace):
    fake = workspace / "fake-modules" / "zmq"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: no pyzmq here')\n")
    env = {"PYTHONPATH": gimp.inside(workspace / "fake-modules"), "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run")}
    folder, results = run_gimp(
        gimp, workspace, "no-zmq", [scenario("rgb8", [photo_layer()], arguments={"scale": 2.0})], env
    )
    result = results["rgb8"]
    assert result["status"] == "execution-error" and "sudo apt install python3-zmq" in result["error"]
    assert same_image(folder, result["before"], result["after"])


def test_the_plugin_starts_the_local_worker_and_reuses_it(gimp, workspace, pipeline):
    run_dir = workspace / "auto-run"
    weights = gimp.inside(workspace / "weights")
    command = [
        sys.executable,
        "-m",
        "invsr_server",
        "serve",
        "--weights",
        weights,
        "--device",
        "cpu",
    ]  # the default bind
    (workspace / "start.json").write_text(json.dumps({"start_command": command}))
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(run_dir),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "start.json"),
        "HF_HUB_OFFLINE": "1",
    }
    first = scenario(
        "first", [photo_layer()], record_calls=True, options={"server": ""}
    )  # as GIMP runs it, with the bar recorded
    twice = [first, scenario("second", [photo_layer()], arguments={"scale": 2.0})]
    try:
        folder, results = run_gimp(gimp, workspace, "auto-start", twice, env)
        assert results["first"]["error"] is None and results["second"]["status"] == "success", results
        texts = [call[1] for call in results["first"]["calls"] if call[0] == "progress_set_text"]
        assert ["progress_init", "Upscaling with InvSR: 1 tile"] in results["first"]["calls"]  # from the first second
        assert texts[:2] == [
            "InvSR: starting the worker, then 1 tile",
            "InvSR: loading the model, once after the worker starts",
        ]
        assert texts[2] == "InvSR: 1 tile done, assembling the result"
        source = pixels(folder, by_name(results["second"]["before"], "photo"))
        np.testing.assert_array_equal(
            pixels(folder, by_name(results["second"]["after"], "photo (InvSR ×2)")),
            expected(pipeline, source, {"scale": 2.0}),
        )
        log = (run_dir / "worker.log").read_text()
        assert log.count("serving on") == 1 and log.count("done in") == 2  # started once, reused
    finally:
        if (run_dir / "worker.json").exists():
            os.kill(json.loads((run_dir / "worker.json").read_text())["pid"], signal.SIGTERM)


def test_a_worker_killed_mid_job_is_told_in_one_sentence_and_the_image_is_untouched(gimp, workspace):
    """The local worker the plug-in started is killed as the out-of-memory killer would (SIGKILL) once its
    job runs: GIMP's message says so in a sentence, with the log's place and what to do, not the log."""
    run_dir = workspace / "killed-run"
    weights = gimp.inside(workspace / "weights")
    command = [sys.executable, "-m", "invsr_server", "serve", "--weights", weights, "--device", "cpu"]
    (workspace / "killed-start.json").write_text(json.dumps({"start_command": command}))
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(run_dir),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "killed-start.json"),
        "HF_HUB_OFFLINE": "1",
    }
    killed = []

    def kill_once_the_job_runs():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            log = run_dir / "worker.log"
            if log.exists() and "model loaded" in log.read_text():  # loaded for the job: it runs now
                killed.append(json.loads((run_dir / "worker.json").read_text())["pid"])
                os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_the_job_runs, daemon=True)
    killer.start()
    arguments = {"scale": 2.0, "steps": 5, "tile": "64"}  # 9 tiles of 5 steps: seconds, killed in the first
    case = scenario("killed", [photo_layer(size=(160, 140))], canvas=(160, 140), arguments=arguments)
    try:
        folder, results = run_gimp(gimp, workspace, "killed", [case], env)
        killer.join()
        said = results["killed"]["error"]
        assert killed and results["killed"]["status"] == "execution-error", results["killed"]
        assert said.startswith("The InvSR worker was killed by the system (SIGKILL), most often because the computer")
        assert f"Its log: {gimp.inside(run_dir / 'worker.log')}" in said and "\n" not in said, said
        assert same_image(folder, results["killed"]["before"], results["killed"]["after"])
    finally:
        killed.append(None)  # the killer's loop ends, killed or not
        if (run_dir / "worker.json").exists():
            with contextlib.suppress(OSError):
                os.kill(json.loads((run_dir / "worker.json").read_text())["pid"], signal.SIGTERM)


def test_a_preview_starts_the_local_worker_and_the_worker_line_then_says_it_is_ready(gimp, workspace, pipeline, photo):
    """No worker runs: ticking Preview starts the local one (the line said it would be), the preview arrives,
    and the line up front is checked again: what Upscale then sees is a ready worker."""
    if not gimp.has_screen:
        pytest.skip("needs xvfb-run and xdotool where GIMP runs (tests/gimp/build-root.sh installs them)")
    run_dir = workspace / "preview-run"
    command = [sys.executable, "-m", "invsr_server", "serve", "--weights", gimp.inside(workspace / "weights")]
    (workspace / "preview-start.json").write_text(json.dumps({"start_command": [*command, "--device", "cpu"]}))
    env = {
        "INVSR_RUNTIME_DIR": gimp.inside(run_dir),
        "INVSR_GIMP_SETTINGS": gimp.inside(workspace / "preview-start.json"),
        "HF_HUB_OFFLINE": "1",
    }
    layer = np.ascontiguousarray(photo[40:60, 50:74])  # 24 x 20: the preview is the whole layer
    block = expected(pipeline, layer, {"scale": 2.0, "seed": 3})
    block = after_the_divider(block)
    (workspace / "started.raw").write_bytes(block.tobytes())
    steps = [["shot", "before"], ["key", "alt+p"]]
    started = ["started", gimp.inside(workspace / "started.raw"), block.shape[1], block.shape[0], 150]
    steps += [["shot-when-shown", started], ["sleep", 3]]
    steps += [["key", "alt+u"]]
    arguments = {"scale": 2.0, "seed": 3, "server": "", "size-by": "scale"}
    case = scenario("started", [photo_layer(pixels=list(layer.tobytes()))], arguments=arguments, dialog=steps)
    try:
        folder, results = run_gimp(gimp, workspace, "preview-starts", [case], env, screen=True)
        assert results["started"]["status"] == "success", results["started"]["error"]
        last = folder / "gimp-config" / "plug-in-settings" / "GimpProcedureConfigRun-python-fu-invsr-upscale.last"
        assert '(worker-line "Worker: local, running on cpu, ready' in last.read_text(), last.read_text()
        # the preview's timing gave the line its time before any upscale had run (a new GIMP folder: no pace)
        assert re.search(rf'\(estimate "Result: 48 \S+ 40 pixels, 1 tile, about{SPACE}\d+', last.read_text())
        assert found_in(screenshot(folder / "started.png"), block)
        assert (run_dir / "worker.log").read_text().count("serving on") == 1  # started once, by the preview
    finally:
        if (run_dir / "worker.json").exists():
            os.kill(json.loads((run_dir / "worker.json").read_text())["pid"], signal.SIGTERM)


def test_installed_plugin_works_in_gimp_and_doctor_finds_every_link(gimp, workspace, worker, pipeline, monkeypatch):
    from invsr_server.cli.commands import main

    monkeypatch.delenv("INVSR_GIMP_PYTHON")
    plugins = workspace / "installed-plug-ins"
    python = ["--gimp-python", gimp.python_command()] if gimp.python_command() else []  # the Python GIMP runs
    weights = gimp.inside(workspace / "weights")
    assert main(["gimp", "install", "--gimp-dir", str(plugins), "--weights", weights, "--device", "cpu", *python]) == 0
    env = {"INVSR_RUNTIME_DIR": gimp.inside(workspace / "run")}
    folder, results = run_gimp(
        gimp,
        workspace,
        "installed",
        [scenario("rgb8", [photo_layer()], arguments={"scale": 2.0})],
        env,
        installed=plugins,
    )
    result = results["rgb8"]
    assert result["status"] == "success", result["error"]
    source = pixels(folder, by_name(result["before"], "photo"))
    np.testing.assert_array_equal(
        pixels(folder, by_name(result["after"], "photo (InvSR ×2)")), expected(pipeline, source, {"scale": 2.0})
    )

    doctor = gimp.run(
        [sys.executable, "-m", "invsr_server", "gimp", "doctor", "--gimp-dir", gimp.inside(plugins)],
        dict(env, HOME=gimp.inside(workspace)),
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = doctor.stdout.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("[ ok ]") for line in lines), doctor.stdout
    assert (
        "GIMP 3 found" in lines[0]
        and "imports gi (Gimp 3.0) and zmq" in lines[2]
        and "tiny job round-trips" in lines[3]
    )

    assert (plugins / "invsr-upscale" / "help" / "en" / "index.html").is_file()  # the page Help opens
    assert main(["gimp", "uninstall", "--gimp-dir", str(plugins)]) == 0
    assert not (plugins / "invsr-upscale").exists()


def test_a_pyenv_python_first_on_path_is_not_taken_for_gimps(gimp, workspace, worker, pipeline):
    """pyenv's Python 3.11 (this test's own interpreter, without gi) first on PATH when `invsr gimp install` runs
    where GIMP is, before GIMP's first start: the plug-in goes to this GIMP's folder, for GIMP's own Python and
    its python3-zmq; a pyzmq for Python 3.11 that an older installer put in vendor/ never shadows that one; and
    doctor names it."""
    if gimp.root is None:
        pytest.skip("runs the installer where GIMP is, in its root")
    home = workspace / "pyenv-home"
    shims = workspace / "pyenv-shims"
    shims.mkdir()
    pyenv_python = Path(sys.base_prefix).resolve() / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (shims / "python3").symlink_to(pyenv_python)  # what pyenv's shim runs
    env = {
        "HOME": gimp.inside(home),
        "PATH": f"{gimp.inside(shims)}:/usr/local/bin:/usr/bin:/bin",
        "INVSR_RUNTIME_DIR": gimp.inside(workspace / "run"),
    }
    weights = gimp.inside(workspace / "weights")
    invsr = [sys.executable, "-m", "invsr_server", "gimp"]
    done = gimp.run([*invsr, "install", "--weights", weights, "--device", "cpu"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    plugins = home / ".config" / "GIMP" / gimp.version / "plug-ins"
    assert f"installed the plug-in in {gimp.inside(plugins / 'invsr-upscale')}" in done.stdout, done.stdout
    assert "(/usr/bin/python3, Python 3.1" in done.stdout and "GIMP's Python's own" in done.stdout, done.stdout
    assert not (plugins / "invsr-upscale" / "vendor").exists()

    vendor = plugins / "invsr-upscale" / "vendor"  # what the installer that asked pyenv's Python left there
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for part in ("zmq", "pyzmq.libs", *(path.name for path in site.glob("pyzmq-*.dist-info"))):
        shutil.copytree(site / part, vendor / part)
    desktop = {key: value for key, value in env.items() if key != "PATH"}  # GIMP starts with the desktop's PATH
    case = scenario("rgb8", [photo_layer()], arguments={"scale": 2.0})
    folder, results = run_gimp(gimp, workspace, "pyenv", [case], desktop, installed=plugins)
    result = results["rgb8"]
    assert result["status"] == "success", result["error"]
    source = pixels(folder, by_name(result["before"], "photo"))
    np.testing.assert_array_equal(
        pixels(folder, by_name(result["after"], "photo (InvSR ×2)")), expected(pipeline, source, {"scale": 2.0})
    )
    doctor = gimp.run([*invsr, "doctor"], env)
    lines = doctor.stdout.strip().splitlines()
    assert doctor.returncode == 0 and len(lines) == 4, doctor.stdout + doctor.stderr
    assert "/usr/bin/python3, Python 3.1" in lines[2] and "imports gi (Gimp 3.0) and zmq" in lines[2], lines[2]
    assert f"built as cp{sys.version_info[0]}{sys.version_info[1]}-" in lines[2] and "leaves it unused" in lines[2]


def test_doctor_names_the_broken_link(tmp_path, capsys):
    from invsr_server.cli.commands import main

    assert main(["gimp", "doctor", "--gimp-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] plug-in not installed in {tmp_path}: run `invsr gimp install`" in out
    assert main(["gimp", "install", "--gimp-dir", str(tmp_path)]) == 0
    stale = tmp_path / "invsr-upscale" / "invsr_wire" / "protocol.py"
    stale.write_text(stale.read_text().replace("PROTOCOL_VERSION = (", "PROTOCOL_VERSION = (0 * 1 + "))  # an older copy
    main(["gimp", "doctor", "--gimp-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "is not this invsr's (invsr_wire/protocol.py differ): run `invsr gimp install` again" in out


def test_reinstalling_keeps_the_users_vendor_folder_and_replaces_a_link(tmp_path):
    from invsr_server.cli.commands import main

    plugins = tmp_path / "plug-ins"
    assert main(["gimp", "install", "--gimp-dir", str(plugins)]) == 0
    vendored = plugins / "invsr-upscale" / "vendor" / "zmq" / "__init__.py"
    vendored.parent.mkdir(parents=True)
    vendored.write_text("# pyzmq for GIMP's bundled Python\n")
    assert main(["gimp", "install", "--gimp-dir", str(plugins)]) == 0  # after an update
    assert vendored.read_text() == "# pyzmq for GIMP's bundled Python\n"

    linked, elsewhere = tmp_path / "linked", tmp_path / "a developer's copy"
    linked.mkdir()
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    (linked / "invsr-upscale").symlink_to(elsewhere)  # a developer's set-up
    assert main(["gimp", "install", "--gimp-dir", str(linked)]) == 0
    assert (
        not (linked / "invsr-upscale").is_symlink()
        and (linked / "invsr-upscale" / "invsr_wire" / "client.py").is_file()
    )
    assert [path.name for path in elsewhere.iterdir()] == ["notes.txt"]  # what the link pointed to, untouched


def test_install_finds_gimps_folder_under_xdg_config_home(tmp_path, monkeypatch):
    from invsr_gimp.install import plugin_dirs

    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no GIMP on it
    assert plugin_dirs(None) == [tmp_path / "config" / "GIMP" / "3.0" / "plug-ins"]  # GIMP's default there
    (tmp_path / "config" / "GIMP" / "3.2").mkdir(parents=True)
    assert plugin_dirs(None) == [tmp_path / "config" / "GIMP" / "3.2" / "plug-ins"]


def test_before_gimp_32_first_starts_the_plugin_goes_to_its_folder(tmp_path, monkeypatch):
    """No configuration folder yet (GIMP never started): the folder of the newest GIMP 3 installed."""
    from invsr_gimp.install import plugin_dirs

    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    console = tmp_path / "bin" / "gimp-console-3.2"
    console.parent.mkdir()
    console.write_text("#!/bin/sh\n")
    console.chmod(0o755)
    monkeypatch.setenv("PATH", str(console.parent))
    assert plugin_dirs(None) == [tmp_path / "config" / "GIMP" / "3.2" / "plug-ins"]


def test_doctor_checks_the_python_gimp_runs_not_this_environments(monkeypatch):
    from invsr_gimp.gimp_python import path_without_environments as _path_without_environments

    monkeypatch.setenv("VIRTUAL_ENV", "/home/me/venv")
    ours = os.path.join(sys.prefix, "bin")  # the tests' own environment, activated or not
    monkeypatch.setenv("PATH", os.pathsep.join(["/home/me/venv/bin", ours, "/usr/local/bin", "/usr/bin"]))
    kept = _path_without_environments().split(os.pathsep)
    assert kept[-2:] == ["/usr/local/bin", "/usr/bin"] and "/home/me/venv/bin" not in kept
    assert (ours in kept) == (sys.prefix == sys.base_prefix)


def test_doctor_names_a_missing_settings_file_and_a_moved_python(tmp_path, monkeypatch, capsys):
    from invsr_server.cli.commands import main

    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(tmp_path / "run"))  # no worker answers there
    assert main(["gimp", "install", "--gimp-dir", str(tmp_path)]) == 0
    settings = tmp_path / "invsr-upscale" / "invsr-settings.json"
    settings.write_text(
        json.dumps({"start_command": [str(tmp_path / "moved-venv" / "bin" / "python"), "-m", "invsr_server", "serve"]})
    )
    assert main(["gimp", "doctor", "--gimp-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] the worker: cannot run " in out and "moved-venv" in out and "run `invsr gimp install` again" in out
    settings.unlink()
    try:
        assert main(["gimp", "doctor", "--gimp-dir", str(tmp_path)]) == 1
        assert "[FAIL] the plug-in's settings cannot be read" in capsys.readouterr().out
    finally:  # that doctor started the default worker in tmp_path/run to round-trip a job: stop it
        from invsr.wire.client import stop_worker

        stop_worker(tmp_path / "run" / "worker.json")


def test_the_plugin_reaches_a_curve_worker_with_the_key_given_at_install(tmp_path, monkeypatch, tiny_weights):
    """The plug-in's own connection code (plain Python and pyzmq), against a real CurveZMQ worker."""
    from invsr.wire.keys import make_key_pair
    from invsr_server.cli.commands import main

    make_key_pair(tmp_path / "server", "server")
    _, laptop = make_key_pair(tmp_path / "allowed", "laptop")
    plugins = tmp_path / "plug-ins"
    assert (
        main(["gimp", "install", "--gimp-dir", str(plugins), "--client-key", str(tmp_path / "server" / "server.key")])
        == 1
    )  # a public key
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from worker_helpers import curve_worker

    from invsr_plugin import flow

    worker = curve_worker(tmp_path / "w", tiny_weights.noise_predictor.parent, keys=tmp_path).wait_ready()
    try:
        monkeypatch.setenv("INVSR_GIMP_SETTINGS", str(tmp_path / "none.json"))
        options = flow.Options(server=str(worker.folder / "worker.json"))
        with pytest.raises(
            flow.PluginError,
            match=r"requires CurveZMQ encryption: .* In a terminal, run: invsr gimp install --client-key",
        ):
            flow.connect(options, on_status=print)
        assert main(["gimp", "install", "--gimp-dir", str(plugins), "--client-key", str(laptop)]) == 0
        monkeypatch.setenv("INVSR_GIMP_SETTINGS", str(plugins / "invsr-upscale" / "invsr-settings.json"))
        with flow.connect(options, on_status=print) as client:
            assert client.hello().pid == worker.connection.pid
    finally:
        worker.stop()


def test_a_mistyped_endpoint_in_the_worker_file_is_named(tmp_path, monkeypatch):
    from invsr.wire import connection

    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin import flow

    path = tmp_path / "worker.json"
    connection.write(path, connection.Connection(endpoint="192.168.1.20:47290", key="00" * 32, pid=1, protocol="2.0"))
    with pytest.raises(
        flow.PluginError, match=r"Cannot use the worker's connection file .*'192.168.1.20:47290'.*tcp://HOST:PORT"
    ):
        flow.connect(flow.Options(server=str(path)), on_status=print)


def test_the_progress_bar_pulses_while_the_worker_loads_or_compiles_and_counts_tiles_otherwise(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    from invsr_plugin.flow import progress_update
    from invsr_wire.replies import Progress

    assert progress_update(Progress("loading model"), 0, 1) == (
        None,
        "InvSR: loading the model, once after the worker starts",
    )
    fraction, text = progress_update(Progress.from_dict({"stage": "compiling", "done": 0, "total": 82}), 1, 2)
    assert fraction is None and text.startswith("InvSR: layer 2/2: compiling the networks")
    assert progress_update(Progress("tiles", done=16, total=82, eta=8.25), 1, 2) == (
        pytest.approx(0.5 + 16 / 82 / 2),
        "InvSR: layer 2/2: tile 16/81, about\u00a08\u00a0s left",  # no-break spaces: a time never wraps apart
    )
