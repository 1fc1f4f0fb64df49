"""Weights missing, as a photographer meets it in GIMP: one sentence with the one command that fetches the
real weights and its size (no file names, no random test weights), on the Worker line once; and the local
worker, whose model failed, started again with the settings of now at the next upscale."""

import json
import sys

import pytest
from gimp_harness import PLUGINS
from worker_helpers import serve_command, stop_started_worker

from invsr.wire.connection import read

SENTENCE = (
    "InvSR's model weights are not on this computer yet. In a terminal, run: invsr weights download {folder} "
    "(about 2.6 GB, once), then upscale again."
)


class Rows:
    """Where flow writes a result's bands in GIMP (gimp_adapter.ResultLayers): here the rows' counts, by layer."""

    def __init__(self):
        self.written = []

    def new(self, region, width, height):
        self.written.append(0)
        return len(self.written) - 1

    def write(self, layer, region, top, rows, width, pixels):
        self.written[layer] += rows


@pytest.fixture()
def plugin(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(PLUGINS / "invsr-upscale"))
    monkeypatch.setenv("INVSR_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("INVSR_GIMP_SETTINGS", str(tmp_path / "settings.json"))
    from invsr_plugin import flow, worker_status

    yield flow, worker_status
    stop_started_worker(tmp_path / "run" / "worker.json")
    for name in [name for name in sys.modules if name.startswith("invsr_plugin")]:
        del sys.modules[name]


def test_missing_weights_say_the_one_command_and_a_new_folder_restarts_the_worker(plugin, tmp_path, tiny_weights):
    flow, worker_status = plugin
    settings = tmp_path / "settings.json"
    empty = tmp_path / "no-weights"
    settings.write_text(json.dumps({"start_command": serve_command(empty)}))
    pixels = bytes(range(256)) * 3  # 16 x 16 RGB
    region = flow.Region(None, "photo", 0, 0, 16, 16, 3, "u8", "R'G'B' u8", pixels, False)
    options = flow.Options(scale=2.0)
    with flow.connect(options, on_status=print) as client, pytest.raises(flow.PluginError) as failed:
        flow.upscale_regions(client, [region], options, lambda *_: None, Rows())
    assert str(failed.value) == SENTENCE.format(folder=empty) + " Nothing was changed."
    line = worker_status.line("", {"start_command": ["invsr"]})
    assert line == "Worker: local, running, but " + SENTENCE.format(folder=empty)
    first = read(tmp_path / "run" / "worker.json").pid

    # The user fixed the settings (`invsr gimp install --weights ...`): the next upscale starts a new worker.
    settings.write_text(json.dumps({"start_command": serve_command(tiny_weights.noise_predictor.parent)}))
    rows = Rows()
    with flow.connect(options, on_status=print) as client:
        [result] = flow.upscale_regions(client, [region], options, lambda *_: None, rows)
    assert (result.width, result.height) == (32, 32)
    assert sum(rows.written) == 32 and len(rows.written) == 1  # one layer's rows, each once
    assert read(tmp_path / "run" / "worker.json").pid != first
