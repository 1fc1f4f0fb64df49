"""The client's typed API (invsr/wire/replies.py, request.py): replies made from a worker's fields, extra fields
ignored as the protocol says, missing ones defaulted; the request the client sends is the library's own."""

import dataclasses

import pytest

import invsr
import invsr.request
from invsr.wire import errors
from invsr.wire.replies import Capabilities, Hello, Limits, ModelState, Progress, Result
from invsr.wire.request import UpscaleRequest

READY = {
    "state": "ready",
    "version": "0.3.0",
    "device": "cuda:0 (NVIDIA H200)",
    "dtype": "fp16",
    "weights": {"source": "folder", "sd_turbo": "/w/sd", "noise_predictor": "/w/np.pth", "tiny_random": False},
    "load_seconds": 4.2,
}
HELLO = {
    "type": "hello",
    "protocol": "3.1",
    "sent": 1.0,
    "re": "a",
    "worker_version": "0.3.0",
    "pid": 4242,
    "model": READY,
    "capabilities": {
        "operations": ["hello", "upscale"],
        "dtypes": ["u8", "u16", "f32"],
        "channels": [1, 2, 3, 4],
        "color_fix": ["wavelet", "ycbcr", "none"],
        "steps": [1, 5],
        "scale": [1.0, 16.0],
        "curve": True,
    },
    "limits": {
        "max_pixels": 512_000_000,
        "max_input_pixels": 64_000_000,
        "max_message_bytes": 10**9,
        "queue_length": 8,
    },
}


def test_hello_from_a_workers_fields():
    hello = Hello.from_dict(HELLO)
    assert (hello.protocol, hello.worker_version, hello.pid) == ("3.1", "0.3.0", 4242)
    assert hello.model == ModelState(**READY) and not hello.model.tiny_random
    assert hello.capabilities.steps == (1, 5) and hello.capabilities.scale == (1.0, 16.0) and hello.capabilities.curve
    assert hello.capabilities.dtypes == ("u8", "u16", "f32") and "upscale" in hello.capabilities.operations
    assert hello.limits == Limits(512_000_000, 64_000_000, 10**9, 8)
    assert hello.model.to_dict() == READY  # as the worker sent it, for reports


def test_extra_fields_are_ignored_at_every_level_and_missing_ones_take_defaults():
    newer = dict(HELLO, gpu_count=2, model=dict(READY, temperature=71), limits={"queue_length": 3, "max_batch": 9})
    newer["capabilities"] = dict(HELLO["capabilities"], operations=["hello", "upscale", "teleport"], video=True)
    hello = Hello.from_dict(newer)
    assert hello.model == ModelState(**READY) and hello.limits == Limits(queue_length=3)
    assert hello.capabilities.operations[-1] == "teleport" and not hasattr(hello.capabilities, "video")
    bare = Hello.from_dict({"protocol": "3.1", "worker_version": "0.3.0"})
    assert bare.model == ModelState() and bare.model.state == "not loaded" and bare.pid is None
    assert bare.limits.max_message_bytes is None and bare.capabilities == Capabilities()


def test_a_failed_model_and_a_ray_workers_actors():
    failed = ModelState.from_dict({"state": "failed", "code": "weights_missing", "error": "run invsr weights download"})
    assert (failed.state, failed.code, failed.device) == ("failed", "weights_missing", None)
    assert failed.error == "run invsr weights download" and failed.to_dict()["code"] == "weights_missing"
    actors = [{"name": "actor-0", "state": "ready", "device": "cpu", "pid": 7}]
    ray = ModelState.from_dict(dict(READY, device="ray: 1 actors on cpu", actors=actors))
    assert ray.actors == tuple(actors) and ray.to_dict()["actors"] == tuple(actors)


def test_progress_from_each_stage():
    loading = Progress.from_dict({"re": "a", "job": "j1", "stage": "loading model", "done": 0, "total": 0, "x": 1})
    assert loading == Progress("loading model", 0, 0, None, None, "j1")
    tiles = Progress.from_dict({"job": "j1", "stage": "tiles", "done": 3, "total": 10, "elapsed": 1.5, "eta": 3.5})
    assert (tiles.done, tiles.total, tiles.elapsed, tiles.eta) == (3, 10, 1.5, 3.5)
    assert Progress.from_dict({}).stage == ""


def test_a_result_holds_the_received_frame_itself():
    frame = bytearray(8 * 6 * 3)
    result = Result.from_dict(
        {"width": 8, "height": 6, "channels": 3, "dtype": "u8", "report": {"seed": 1}, "job": "j", "new": 0}, frame
    )
    assert (result.width, result.height, result.channels, result.dtype, result.job) == (8, 6, 3, "u8", "j")
    assert result.report == {"seed": 1} and result.pixels.obj is frame  # no copy: results may be gigabytes
    assert Result.from_dict({"width": 1, "height": 1, "channels": 1, "dtype": "u8"}, b"x").report == {}
    with pytest.raises(errors.BadMessage, match="without channels, dtype"):
        Result.from_dict({"width": 8, "height": 6}, frame)


def test_replies_are_frozen():
    hello = Hello.from_dict(HELLO)
    for value, field in ((hello, "pid"), (hello.model, "state"), (Progress("tiles"), "done")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 0)


def test_the_request_is_defined_once_in_the_wire():
    """The library, the worker and every client validate the one class (the plug-in carries it into GIMP)."""
    assert invsr.request.UpscaleRequest is UpscaleRequest and invsr.UpscaleRequest is UpscaleRequest
    assert UpscaleRequest.__module__ == "invsr.wire.request"
    with pytest.raises(errors.InvalidRequest, match="steps must be an integer from 1 to 5"):
        UpscaleRequest(steps=9)
    assert UpscaleRequest.from_dict(UpscaleRequest(scale=2, seed=7).to_dict()) == UpscaleRequest(scale=2, seed=7)
