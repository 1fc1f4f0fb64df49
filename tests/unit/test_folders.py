"""Folders with `invsr upscale`: --recursive keeps the tree, --suffix writes next to the inputs (and never
takes its own outputs for inputs), --skip-existing resumes an interrupted run, counting only what remains."""

import json
import os
import subprocess

import numpy as np
import pytest
import tqdm as tqdm_module

from invsr.files import FileOptions, plan_jobs
from invsr.image_io import ImageFile, is_image_path, read_image, write_image
from invsr_server.cli.commands import main


@pytest.fixture
def tree(tmp_path, small_photo):
    """in/a.png, in/sub/b.jpg, in/sub/deeper/c.tif, and a text file that is no image."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    write_image(root / "a.png", ImageFile(small_photo))
    write_image(root / "sub" / "b.jpg", ImageFile(small_photo))
    write_image(root / "sub" / "deeper" / "c.tif", ImageFile(small_photo[:16, :16].copy()))
    (root / "sub" / "notes.txt").write_text("not an image")
    return root


def upscale(*args, weights):
    return main(["upscale", *map(str, args), "--scale", "1", "--weights", str(weights), "--device", "cpu"])


def relative(jobs, base):
    return [(str(source.relative_to(base)), str(target.relative_to(base))) for source, target in jobs]


def test_recursive_keeps_the_folder_tree_under_the_output(tmp_path, tree, tiny_weights):
    out = tmp_path / "out"
    assert upscale(tree, "-o", out, "--recursive", weights=tiny_weights.noise_predictor.parent) == 0
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert found == ["a.png", "sub/b.jpg", "sub/deeper/c.tif"]
    assert read_image(out / "sub" / "deeper" / "c.tif").pixels.shape == (16, 16, 3)
    jobs, _ = plan_jobs([tree], out, is_image_path)  # without --recursive: the folder's own images only
    assert relative(jobs, tmp_path) == [("in/a.png", "out/a.png")]


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(tree):
    jobs, failures = plan_jobs([tree], tree / "up", is_image_path, FileOptions(recursive=True))
    (tree / "up" / "sub").mkdir(parents=True)
    write_image(tree / "up" / "a.png", ImageFile(np.zeros((4, 4, 3), np.uint8)))  # an earlier run's result
    again, _ = plan_jobs([tree], tree / "up", is_image_path, FileOptions(recursive=True))
    assert failures == [] and again == jobs
    assert relative(jobs, tree) == [
        ("a.png", "up/a.png"),
        ("sub/b.jpg", "up/sub/b.jpg"),
        ("sub/deeper/c.tif", "up/sub/deeper/c.tif"),
    ]


def test_suffix_writes_next_to_the_inputs_and_never_upscales_its_own_outputs(tree, tiny_weights):
    weights = tiny_weights.noise_predictor.parent
    assert upscale(tree, "--recursive", "--suffix", "_x4", weights=weights) == 0
    assert sorted(p.name for p in tree.rglob("*_x4.*")) == ["a_x4.png", "b_x4.jpg", "c_x4.tif"]
    assert (tree / "sub" / "b_x4.jpg").is_file() and read_image(tree / "sub" / "b_x4.jpg").pixels.shape == (24, 40, 3)
    jobs, _ = plan_jobs([tree], None, is_image_path, FileOptions(recursive=True, suffix="_x4"))
    assert [source.name for source, _ in jobs] == ["a.png", "b.jpg", "c.tif"]  # a_x4.png is a.png's output
    jobs, _ = plan_jobs([tree / "a.png"], tree / "elsewhere", is_image_path, FileOptions(suffix="_big"))
    assert relative(jobs, tree) == [("a.png", "elsewhere/a_big.png")]  # in an output folder too


def test_without_output_or_suffix_the_command_says_what_to_give(tree, capsys):
    assert main(["upscale", str(tree / "a.png")]) == 2
    assert "give -o OUTPUT (a file or folder), or --suffix TEXT to write next to the inputs" in capsys.readouterr().err
    assert main(["upscale", str(tree / "a.png"), "--suffix", "x/y"]) == 2
    assert "cannot hold a folder separator" in capsys.readouterr().err


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_skip_existing_resumes_an_interrupted_run_and_counts_what_remains(
    tmp_path, tree, tiny_weights, monkeypatch, capsys
):
    weights, out, report = tiny_weights.noise_predictor.parent, tmp_path / "out", tmp_path / "report.json"
    import invsr.wire.atomic

    real_replace, renamed = os.replace, []

    def interrupted_second(source, target):  # Ctrl-C while the second output is written
        renamed.append(target)
        if len(renamed) == 2:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(invsr.wire.atomic.os, "replace", interrupted_second)
    assert upscale(tree, "-o", out, "--recursive", weights=weights) == 130
    monkeypatch.setattr(invsr.wire.atomic.os, "replace", real_replace)
    assert sorted(p.name for p in out.rglob("*")) == ["a.png", "sub"]  # the interrupted one left no temporary file
    stale = out / "sub" / f".c.tif.{dead_pid()}.partial"  # what a run killed outright leaves
    (out / "sub" / "deeper").mkdir()
    stale.write_bytes(b"half an image")
    finished = (out / "a.png").stat().st_mtime_ns
    capsys.readouterr()

    class Shown(tqdm_module.tqdm):  # the progress bar, which hides itself when stderr is not a terminal
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False})

    monkeypatch.setattr(tqdm_module, "tqdm", Shown)
    assert upscale(tree, "-o", out, "--recursive", "--skip-existing", "--report", report, weights=weights) == 0
    err = capsys.readouterr().err
    assert "1 of 3 outputs exist already and are left alone (--skip-existing)" in err
    assert "2/2" in err and "/3" not in err  # the bar counts the two that remain
    assert (out / "a.png").stat().st_mtime_ns == finished  # not redone
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "sub/b.jpg", "sub/deeper/c.tif"]
    assert not stale.exists()
    entries = json.loads(report.read_text())["images"]
    assert [e.get("skipped") for e in entries] == [None, None, "the output exists"]

    assert upscale(tree, "-o", out, "--recursive", "--skip-existing", weights=tmp_path / "no-weights-needed") == 0
    assert "nothing to upscale (every output exists)" in capsys.readouterr().err


def test_a_temporary_file_of_a_running_process_is_left_alone(tmp_path):
    from invsr.wire.atomic import remove_stale_partials

    running = tmp_path / f".x.png.{os.getppid()}.partial"
    dead = tmp_path / f".y.png.{dead_pid()}.partial"
    for path in (running, dead):
        path.write_bytes(b"")
    assert remove_stale_partials(tmp_path) == [dead] and running.exists()
