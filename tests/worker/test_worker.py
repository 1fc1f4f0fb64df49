"""The worker and its client, as real processes on real loopback sockets: round trips equal in-process
results, many clients at once, dead, frozen and vanished peers, cancellation, limits and bad input."""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import signed_as_version_1
from worker_helpers import (
    WorkerProcess,
    connect_at_once,
    curve_worker,
    serve_command,
    stop_started_worker,
    upscale_unchecked,
)

from invsr.request import UpscaleRequest
from invsr.wire import connection as connections
from invsr.wire import errors, protocol
from invsr.wire.client import Client, connect
from invsr.wire.protocol import Message, sign
from invsr.wire.replies import ModelState, Progress

LONG_JOB = UpscaleRequest(tile=32, overlap=8, steps=5)  # about 10 s on the test weights: 121 tiles of a 256 x 256 image
PROMPT = 5.0  # seconds: a ping answered within the client's own timeout, generous on a busy 2-core machine


@pytest.fixture(scope="module")
def worker(tmp_path_factory, tiny_weights):
    with WorkerProcess(tmp_path_factory.mktemp("worker"), tiny_weights.noise_predictor.parent, "--preload") as process:
        yield process.wait_ready()


@pytest.fixture
def client(worker):
    with worker.client() as c:
        yield c


def noise_image(side=256, seed=0):
    return (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)


def send_upscale(client, image, **params):
    array = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, None])
    dtype = {"uint8": "u8", "uint16": "u16", "float32": "f32"}[str(array.dtype)]
    result = client.upscale(
        memoryview(array).cast("B"), array.shape[1], array.shape[0], array.shape[2], dtype, UpscaleRequest(**params)
    )
    out = np.frombuffer(result.pixels, dtype=array.dtype).reshape(result.height, result.width, result.channels)
    return result, out


def test_round_trip_is_byte_for_byte_the_in_process_result(client, pipeline, small_photo):
    for image, params in [
        (small_photo, {"seed": 3}),
        (small_photo.astype(np.uint16) * 257, {"seed": 4, "scale": 2.5}),
        (np.dstack([small_photo, np.full(small_photo.shape[:2], 128, np.uint8)]), {"steps": 2}),
        (small_photo[..., :1].astype(np.float32) / 255, {"color_fix": "ycbcr"}),
    ]:
        result, remote = send_upscale(client, image, **params)
        local = pipeline.upscale(image, UpscaleRequest(**params)).image
        np.testing.assert_array_equal(remote.reshape(local.shape), local)
        assert result.report["seed"] == params.get("seed", 0)


def test_hello_ping_status_and_echo(client):
    wait_for_model(client)  # --preload loads in the background: run alone, this test may come first
    hello = client.hello()
    assert (
        hello.protocol == protocol.version_text()
        and hello.model.state == "ready"
        and hello.pid == client.connection.pid
    )
    assert hello.model.tiny_random is True and hello.model.device == "cpu" and hello.model.load_seconds > 0
    assert hello.limits.queue_length == 8 and "upscale" in hello.capabilities.operations
    assert hello.capabilities.steps == (1, 5) and hello.capabilities.dtypes == ("u8", "u16", "f32")
    assert client.ping() < PROMPT
    assert client.status()["jobs"] == []
    payload = [os.urandom(1000), b"", os.urandom(3 * 1024 * 1024)]
    assert [bytes(b) for b in client.echo(payload, note="x")] == payload


def test_progress_arrives_for_each_tile(client):
    seen = []
    result = client.upscale(
        noise_image(64).tobytes(), 64, 64, 3, "u8", UpscaleRequest(tile=32, overlap=8), on_progress=seen.append
    )
    tiles = result.report["tiling"]["tiles"]
    assert [p.done for p in seen if p.stage == "tiles"] == list(range(1, tiles + 1))
    assert seen[-1].stage == "finish" and seen[-1].done == seen[-1].total == tiles + 1
    assert all(isinstance(p, Progress) and p.job == result.job for p in seen) and result.job


def test_several_clients_at_once_each_get_their_own_result(worker, pipeline):
    images = [noise_image(48, seed) for seed in range(4)]
    results, errors = {}, []

    def run(index):
        try:
            with worker.client() as c:
                results[index] = send_upscale(c, images[index], seed=index)[1]
        except Exception as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for index, image in enumerate(images):
        np.testing.assert_array_equal(results[index], pipeline.upscale(image, UpscaleRequest(seed=index)).image)


def test_cancel_stops_the_job_at_the_next_tile(client):
    seen = []
    with pytest.raises(errors.Cancelled, match="cancelled by the client"):
        client.upscale(
            noise_image().tobytes(),
            256,
            256,
            3,
            "u8",
            LONG_JOB,
            on_progress=seen.append,
            should_cancel=lambda: len(seen) >= 2,
        )
    assert len(seen) < 20
    assert client.status()["jobs"] == []


def test_bad_parameters_and_pixels_get_clear_errors_and_the_worker_goes_on(client):
    image = noise_image(16).tobytes()
    with pytest.raises(errors.InvalidRequest, match="steps must be an integer from 1 to 5"):
        upscale_unchecked(client, image, 16, 16, 3, "u8", {"steps": 9})  # the worker's own check on arrival
    with pytest.raises(errors.InvalidRequest, match="steps must be an integer from 1 to 5"):
        client.upscale(image, 16, 16, 3, "u8", UpscaleRequest(steps=9))  # the same check, where it is made
    with pytest.raises(TypeError, match="must be an UpscaleRequest"):
        client.upscale(image, 16, 16, 3, "u8", {"steps": 1})
    with pytest.raises(errors.InvalidImage, match="NaN or infinite"):
        client.upscale(np.full((4, 4, 3), np.nan, np.float32).tobytes(), 4, 4, 3, "f32", UpscaleRequest())
    with pytest.raises(errors.InvalidImage, match="dtype must be one of u8, u16, f32"):
        client.upscale(image, 16, 16, 3, "f64", UpscaleRequest())
    with pytest.raises(errors.BadMessage, match="one pixel frame of 768 bytes"):
        client.upscale(image[:100], 16, 16, 3, "u8", UpscaleRequest())
    with pytest.raises(errors.TooLarge, match="over this worker's limit"):
        client.upscale(image, 1_000_000, 1_000_000, 3, "u8", UpscaleRequest())
    with pytest.raises(errors.UnknownJob):
        client.cancel("no-such-job")
    assert client.ping() < PROMPT


def test_unknown_operation_is_refused(client):
    with pytest.raises(errors.UnknownOperation, match="unknown request type 'teleport'"):
        client.request("teleport", final=("teleport",))


def signed(key, fields, buffers=(), protocol_version=protocol.version_text(), signed_buffers=False):
    """Frames of a message signed as the workers here sign (on loopback: buffers by their lengths alone)."""
    header = json.dumps(dict({"sent": time.time()}, **fields, protocol=protocol_version)).encode()
    return [sign(key, header, buffers, signed_buffers), header, *buffers]


def reply_to(sock, timeout=5.0):
    assert sock.poll(int(timeout * 1000)), "no reply"
    return sock.recv_multipart()


def test_wrong_secret_wrong_version_and_garbage_are_refused(worker, client):
    sock = worker.raw_socket()
    key = worker.connection.key_bytes
    sock.send_multipart(signed(b"not the secret", {"type": "ping", "id": "a"}))
    frames = reply_to(sock)
    with pytest.raises(errors.Unauthorized):  # its reply is signed with the real secret we lack
        Message.decode(b"not the secret", frames)
    sock.send_multipart(signed(key, {"type": "ping", "id": "b"}, protocol_version="9.0"))
    error = Message.decode(key, reply_to(sock))
    assert (
        error.fields["code"] == "protocol_version" and error.fields["details"]["supported"] == protocol.version_text()
    )
    sock.send_multipart(signed_as_version_1(key, {"type": "ping", "id": "b1"}))  # the older signature
    assert "protocol 1.0 is not compatible" in Message.decode(key, reply_to(sock)).fields["message"]
    sock.send_multipart([sign(key, b"{not json", []), b"{not json"])
    assert Message.decode(key, reply_to(sock)).fields["code"] == "bad_message"
    sock.send_multipart(signed(key, {"type": "ping"}))  # no id
    assert Message.decode(key, reply_to(sock)).fields["code"] == "bad_message"
    replay = signed(key, {"type": "ping", "id": "c"})
    sock.send_multipart(replay)
    assert Message.decode(key, reply_to(sock)).type == "pong"
    sock.send_multipart(replay)
    assert "replayed" in Message.decode(key, reply_to(sock)).fields["message"]
    sock.send_multipart(signed(key, {"type": "ping", "id": "d", "sent": time.time() - 7200}))  # older than remembered
    assert (
        "s ago: a replay, or the two computers' clocks differ" in Message.decode(key, reply_to(sock)).fields["message"]
    )
    sock.send_multipart(signed(key, {"type": "cancel", "id": "f", "job": ["not", "an", "id"]}))
    assert Message.decode(key, reply_to(sock)).fields["code"] == "bad_message"
    sock.send_multipart(
        [sign(key, b'{"type":"ping","id":1' + b"1" * 5000 + b"}", []), b'{"type":"ping","id":1' + b"1" * 5000 + b"}"]
    )
    assert Message.decode(key, reply_to(sock)).fields["code"] == "bad_message"  # a number Python will not parse
    sock.close()
    assert client.ping() < PROMPT


def test_a_peer_without_the_connection_file_never_reaches_the_worker(worker, client):
    """Other users of the machine can connect to loopback, but ZeroMQ's handshake needs the password
    derived from the secret: without it no message arrives, none is answered, and no routing id is given
    (ROUTER ids are predictable: claiming the next ones used to crash libzmq, or take over a client's job)."""
    key = worker.connection.key_bytes
    first_ids = [bytes([0]) + (0x6B8B4567 + n).to_bytes(4, "big") for n in range(60)]
    strangers = []
    for routing_id in first_ids:
        sock = worker.raw_socket(password=False)
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        strangers.append(sock)
    for sock in strangers[:5]:
        with contextlib.suppress(zmq.Again):  # refused already: the failed handshake closed its connection
            sock.send_multipart(signed(key, {"type": "ping", "id": "x"}), flags=zmq.NOBLOCK)  # even signed right
    assert not any(sock.poll(500) for sock in strangers[:5])
    with worker.client() as newcomer:  # a rightful client gets an id now, as the strangers hold theirs
        assert newcomer.ping() < PROMPT and client.ping() < PROMPT
    for sock in strangers:
        sock.close()
    assert worker.process.poll() is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=5), st.none(), st.floats(allow_nan=False)),
    height=st.integers(-(2**70), 2**70),
    channels=st.integers(-3, 10**6),
    dtype=st.sampled_from(["u8", "u16", "f32", "f64", "", "u8 "]),
)
def test_huge_or_nonsense_declared_sizes_are_refused_before_any_allocation(
    worker, client, width, height, channels, dtype
):
    sock = worker.raw_socket()
    key = worker.connection.key_bytes
    fields = {
        "type": "upscale",
        "id": os.urandom(8).hex(),
        "width": width,
        "height": height,
        "channels": channels,
        "dtype": dtype,
        "params": {},
    }
    sock.send_multipart(signed(key, fields, [b"\0" * 12]))
    assert Message.decode(key, reply_to(sock)).fields["code"] in ("too_large", "bad_message", "invalid_image")
    sock.close()
    assert client.ping() < PROMPT


def test_the_client_imports_neither_numpy_nor_torch():
    """Nor anything of the library but the wire (the package `invsr` itself is imported: the wire lives in it)."""
    code = (
        "import sys, invsr.wire.client\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')"
        " or m.startswith('invsr.') and not m.startswith('invsr.wire')))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.binary(max_size=300), min_size=0, max_size=5), truncate=st.integers(0, 40))
def test_random_and_truncated_frames_never_stop_the_worker(worker, client, frames, truncate):
    sock = worker.raw_socket()
    if frames:
        sock.send_multipart(frames)
    valid = signed(worker.connection.key_bytes, {"type": "ping", "id": os.urandom(8).hex()})
    sock.send_multipart([frame[:truncate] for frame in valid])  # a real message, cut short
    sock.close()
    assert client.ping() < PROMPT


def test_oversized_message_drops_the_sender_not_the_worker(tmp_path, tiny_weights):
    small = WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--max-message-mb", "0.01").wait_ready()
    try:
        sock = small.raw_socket()
        sock.send_multipart(signed(small.connection.key_bytes, {"type": "echo", "id": "big"}, [b"\0" * 100_000]))
        assert not sock.poll(1500)  # dropped unread
        sock.close()
        with small.client() as c:
            assert c.ping() < PROMPT
            with pytest.raises(
                errors.TooLarge, match=r"over this worker's limit of 0 MB per message: .*--max-message-mb"
            ):
                send_upscale(c, noise_image(64))  # the client refuses it rather than wait for a reply that never comes
    finally:
        small.stop()


def test_what_cannot_be_done_is_refused_before_queueing(client):
    """An output over the pixel limit, or an impossible size, is refused on arrival, not after the queue."""
    for params, error in [
        ({"scale": 16}, errors.InvalidImage),
        ({"width": 100_000}, errors.InvalidRequest),
        ({"timesteps": 200}, errors.InvalidRequest),
    ]:
        arrivals = []
        with pytest.raises(error):
            upscale_unchecked(client, bytes(2001 * 1000 * 3), 2001, 1000, 3, "u8", params, on_progress=arrivals.append)
        assert arrivals == []  # never accepted, never queued
    assert client.status()["jobs"] == []


def test_status_says_which_jobs_are_yours_and_nothing_of_other_clients(worker, client):
    done = threading.Event()

    def run_long_job():
        with worker.client() as other, contextlib.suppress(errors.Cancelled):
            image = noise_image()
            other.upscale(image.tobytes(), 256, 256, 3, "u8", LONG_JOB, should_cancel=done.is_set)  # cancelled below

    thread = threading.Thread(target=run_long_job)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not client.status()["jobs"] and time.monotonic() < deadline:
            time.sleep(0.1)
        (job,) = client.status()["jobs"]
        assert job["yours"] is False and set(job) == {"state", "progress", "yours"}  # not even the id that cancels it
    finally:
        done.set()  # its own client cancels it: no other may (test_worker_hardening.py)
        thread.join()


def test_a_slow_link_is_not_mistaken_for_a_lost_worker(worker):
    """Over a 4 MB/s link a 30 MB upload takes 7 s, longer than the 5 s heartbeat timeout, while the
    pings wait behind the pixels: the client allows for the bytes in flight."""
    listener = socket.create_server(("127.0.0.1", 0))
    host, port = worker.connection.endpoint.removeprefix("tcp://").rsplit(":", 1)
    threading.Thread(target=slow_relay, args=(listener, (host, int(port)), 4e6), daemon=True).start()
    slow = dataclasses.replace(worker.connection, endpoint=f"tcp://127.0.0.1:{listener.getsockname()[1]}")
    try:
        with Client(slow) as c:
            started = time.monotonic()
            with pytest.raises(errors.InvalidRequest, match="steps"):  # the worker's answer, once the pixels are there
                upscale_unchecked(c, bytes(30_000_000), 5000, 2000, 3, "u8", {"steps": 99})
            assert time.monotonic() - started > 6
    finally:
        listener.close()


def slow_relay(listener, target, rate):
    """Forward each connection to `target`, the client's side at `rate` bytes per second."""

    def pump(source, sink, limit):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
                time.sleep(len(data) / limit if limit else 0)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    with contextlib.suppress(OSError):
        while True:
            near, _ = listener.accept()
            far = socket.create_connection(target)
            threading.Thread(target=pump, args=(near, far, rate), daemon=True).start()
            threading.Thread(target=pump, args=(far, near, None), daemon=True).start()


def test_worker_killed_mid_job_is_reported_within_seconds(tmp_path, tiny_weights):
    victim = WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--preload").wait_ready()
    seen = []
    killed_at = []

    def kill_after_first_progress(progress):
        seen.append(progress)
        if len(seen) == 2:
            victim.signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

    try:
        with victim.client(timeout=30.0) as c, pytest.raises(errors.WorkerLost, match=r"has died"):
            c.upscale(noise_image().tobytes(), 256, 256, 3, "u8", LONG_JOB, on_progress=kill_after_first_progress)
        # "has died" is the process check's finding, made at a heartbeat; the silence timeout (30 s here) never came
        assert time.monotonic() - killed_at[0] < 15
    finally:
        victim.stop()


def test_worker_frozen_mid_job_is_reported_within_seconds(tmp_path, tiny_weights):
    victim = WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--preload").wait_ready()
    frozen_at = []

    def freeze(progress):
        if not frozen_at and progress.stage == "tiles":
            victim.signal(signal.SIGSTOP)
            frozen_at.append(time.monotonic())

    try:
        stopped = pytest.raises(errors.WorkerLost, match=r"is stopped .*kill -CONT")
        with victim.client(timeout=3.0) as c, stopped as lost:
            c.upscale(noise_image().tobytes(), 256, 256, 3, "u8", LONG_JOB, on_progress=freeze)
        assert time.monotonic() - frozen_at[0] < 6
        assert "serving on" in str(lost.value)  # the end of the worker's log is quoted
    finally:
        victim.stop()


CLIENT_THAT_VANISHES = r"""
import sys, numpy as np
from invsr.wire.client import Client
from invsr.wire import connection
from invsr.wire.request import UpscaleRequest
client = Client(connection.read(sys.argv[1]))
def show(progress):
    print("progress", flush=True)
image = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
client.upscale(image.tobytes(), 256, 256, 3, "u8", UpscaleRequest(tile=32, overlap=8, steps=5), on_progress=show)
"""


def test_client_killed_mid_job_gets_its_job_cancelled_and_the_next_one_served(worker, client):
    vanishing = subprocess.Popen(
        [sys.executable, "-c", CLIENT_THAT_VANISHES, str(worker.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert vanishing.stdout.readline().strip() == "progress"
        assert client.status()["running"] == 1
        vanishing.kill()
        killed = time.monotonic()
        while client.status()["jobs"]:
            # its closed connection is noticed at once (the 5 s heartbeat timeout is the fallback), then the
            # job stops at the next stage of the networks
            assert time.monotonic() - killed < 12, "the abandoned job was not cancelled"
            time.sleep(0.2)
    finally:
        vanishing.kill()
        vanishing.wait()
    log = worker.log.read_text()
    assert "cancelled: the client disconnected" in log or "the client sent no heartbeat" in log, log
    assert send_upscale(client, noise_image(16))[1].shape == (64, 64, 3)


def test_full_queue_answers_busy(tmp_path, tiny_weights):
    # a raw socket sends no heartbeats: give it time before its jobs count as abandoned
    small = WorkerProcess(
        tmp_path,
        tiny_weights.noise_predictor.parent,
        "--preload",
        "--queue-length",
        "1",
        "--client-timeout",
        "60",
        "--jobs-per-client",
        "3",  # more than the places: the queue fills, not this client's share of it
    ).wait_ready()
    try:
        sock = small.raw_socket()
        key = small.connection.key_bytes
        image = noise_image().tobytes()
        codes = []
        for index in range(3):
            fields = {
                "type": "upscale",
                "id": f"j{index}",
                "width": 256,
                "height": 256,
                "channels": 3,
                "dtype": "u8",
                "params": LONG_JOB.to_dict(),
            }
            sock.send_multipart(signed(key, fields, [image]))
            message = Message.decode(key, reply_to(sock))
            codes.append(message.type if message.type != "error" else message.fields["code"])
            while index == 0 and message.fields.get("stage") != "tiles":  # wait until the first job runs
                message = Message.decode(key, reply_to(sock, timeout=30))
        assert codes == ["accepted", "accepted", "busy"]  # one running, one queued, then full
        sock.close()
    finally:
        small.stop()


def test_sigterm_cancels_the_job_removes_the_connection_file_and_exits(tmp_path, tiny_weights):
    seen = []

    def stop_worker(progress):
        seen.append(progress)
        if len(seen) == 2:
            victim.signal(signal.SIGTERM)

    with WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--preload") as victim:
        with victim.wait_ready().client() as c, pytest.raises(errors.Cancelled, match="the worker is stopping"):
            c.upscale(noise_image().tobytes(), 256, 256, 3, "u8", LONG_JOB, on_progress=stop_worker)
        assert victim.process.wait(timeout=20) == 0
        assert not victim.path.exists()


def test_missing_weights_fail_the_job_not_the_worker(tmp_path):
    empty = WorkerProcess(tmp_path, tmp_path / "no-weights").wait_ready()
    try:
        with empty.client() as c:
            with pytest.raises(errors.WeightsMissing, match="invsr weights download"):
                c.upscale(noise_image(16).tobytes(), 16, 16, 3, "u8", UpscaleRequest())
            assert c.hello().model.state == "failed"
            assert c.ping() < PROMPT
    finally:
        empty.stop()


def test_connection_file_is_private(worker):
    assert worker.path.stat().st_mode & 0o777 == 0o600


def test_non_loopback_bind_without_keys_is_refused(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invsr_server",
            "serve",
            "--bind",
            "tcp://0.0.0.0:*",
            "--connection-file",
            str(tmp_path / "w.json"),
            "--log-file",
            str(tmp_path / "w.log"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "refusing to bind tcp://0.0.0.0:* beyond this machine without encryption" in result.stderr
    assert not (tmp_path / "w.json").exists()


def test_curve_round_trip_and_unknown_clients_are_not_served(tmp_path, tiny_weights, pipeline, small_photo):
    from invsr.wire.keys import load_key_pair, make_key_pair

    make_key_pair(tmp_path / "server", "server")
    _, client_secret = make_key_pair(tmp_path / "allowed", "photographer")
    _, stranger_secret = make_key_pair(tmp_path / "others", "stranger")
    secure = curve_worker(tmp_path / "w", tiny_weights.noise_predictor.parent, keys=tmp_path).wait_ready()
    try:
        assert secure.connection.curve_server_key
        with secure.client(client_keys=load_key_pair(client_secret)) as c:
            _, remote = send_upscale(c, small_photo, seed=2)
        np.testing.assert_array_equal(remote, pipeline.upscale(small_photo, UpscaleRequest(seed=2)).image)
        stranger = secure.client(client_keys=load_key_pair(stranger_secret), timeout=2.0)
        with stranger as c, pytest.raises(errors.Unauthorized, match="refused this client's CurveZMQ key"):
            c.ping()
    finally:
        secure.stop()


def test_connect_starts_a_worker_when_none_answers(tmp_path, tiny_weights):
    path = tmp_path / "run" / "worker.json"
    command = serve_command(
        tiny_weights.noise_predictor.parent, "--bind", "tcp://127.0.0.1:*", "--log-file", str(tmp_path / "w.log")
    )
    statuses = []
    try:
        with connect(path, start_command=command, on_status=statuses.append) as client:
            assert statuses == ["Starting the InvSR worker..."]
            assert client.hello().model.state in ("not loaded", "ready")
            again = connect(path, start_command=command, on_status=statuses.append)  # reused, not started twice
            assert again.connection.pid == client.connection.pid and len(statuses) == 1
            again.close()
    finally:
        stop_started_worker(path)


def test_a_worker_of_an_older_protocol_is_named_with_how_to_stop_it(tmp_path):
    """A 1.0 worker cannot verify a 2.0 request and answers `unauthorized`, signed its own way."""
    context = zmq.Context.instance()
    old_worker = context.socket(zmq.ROUTER)
    port = old_worker.bind_to_random_port("tcp://127.0.0.1")
    key = bytes(32)

    def answer_like_version_1():
        if old_worker.poll(10_000):
            peer, *_ = old_worker.recv_multipart()
            old_worker.send_multipart(
                [peer, *signed_as_version_1(key, {"type": "error", "code": "unauthorized", "message": "wrong secret"})]
            )

    thread = threading.Thread(target=answer_like_version_1)
    thread.start()
    path = tmp_path / "worker.json"
    connections.write(path, connections.Connection(f"tcp://127.0.0.1:{port}", key.hex(), "1.0", pid=os.getpid()))
    try:
        with pytest.raises(
            errors.VersionMismatch, match=r"is another version: protocol 1\.0 .* Stop it with `invsr serve --stop`"
        ):
            connect(path, start_command=[sys.executable, "-c", "raise SystemExit('must not start')"])
    finally:
        thread.join()
        old_worker.close(linger=0)


def test_serve_stop_ends_the_worker_and_never_signals_a_stranger(tmp_path, tiny_weights, capsys):
    from invsr_server.cli.commands import main

    running = WorkerProcess(tmp_path / "w", tiny_weights.noise_predictor.parent).wait_ready()
    try:
        assert main(["serve", "--stop", "--connection-file", str(running.path)]) == 0
        assert f"stopped the InvSR worker (process {running.process.pid})" in capsys.readouterr().out
        assert running.process.wait(timeout=5) == 0 and not running.path.exists()
    finally:
        running.stop()
    # A stale file whose process id now belongs to another program, at an endpoint nobody answers
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stale = tmp_path / "stale.json"
    connections.write(
        stale, connections.Connection("tcp://127.0.0.1:9", "00" * 32, protocol.version_text(), pid=stranger.pid)
    )
    try:
        assert main(["serve", "--stop", "--connection-file", str(stale)]) == 0
        assert "no InvSR worker runs" in capsys.readouterr().out
        assert stranger.poll() is None and not stale.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_two_clients_starting_the_worker_at_once_both_get_it(tmp_path, tiny_weights):
    """Both start a worker; one cannot bind the port the other took, and its client uses the winner."""
    port = socket.create_server(("127.0.0.1", 0))
    endpoint = f"tcp://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    command = serve_command(
        tiny_weights.noise_predictor.parent, "--bind", endpoint, "--log-file", str(tmp_path / "w.log")
    )
    clients = connect_at_once(tmp_path / "worker.json", command)
    try:
        assert None not in clients and clients[0].connection.pid == clients[1].connection.pid
        assert clients[1].ping() < PROMPT
    finally:
        stop_started_worker(tmp_path / "worker.json")
        for client in clients:
            client and client.close()


def test_a_model_that_fails_to_load_for_any_reason_is_reported_as_failed(tmp_path, tiny_weights):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights.noise_predictor.parent, weights)
    config = next(weights.glob("noise_predictor*.json"))
    config.write_text("{ not json")
    broken = WorkerProcess(tmp_path / "w", weights).wait_ready()
    try:
        with broken.client() as c:
            with pytest.raises(errors.InvSRError):
                send_upscale(c, noise_image(32))
            assert c.hello().model.state == "failed"
    finally:
        broken.stop()


def test_a_worker_that_cannot_start_is_reported_with_its_reason(tmp_path):
    command = [sys.executable, "-c", "import sys; sys.exit('no GPU driver found (simulated)')"]
    with pytest.raises(errors.WorkerLost, match=r"(?s)could not start .*no GPU driver found"):
        connect(tmp_path / "worker.json", start_command=command)
    with pytest.raises(errors.WorkerLost, match="no InvSR worker answers"):
        connect(tmp_path / "worker.json")


def test_cli_through_the_worker_writes_the_same_bytes_as_in_process(worker, tiny_weights, tmp_path, small_photo):
    from invsr.image_io import ImageFile, write_image
    from invsr_server.cli.commands import main

    write_image(tmp_path / "in.png", ImageFile(small_photo.astype(np.uint16) * 257))
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "local.png"),
                "--weights",
                str(tiny_weights.noise_predictor.parent),
                "--device",
                "cpu",
                "--seed",
                "9",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "remote.png"),
                "--server",
                str(worker.path),
                "--seed",
                "9",
            ]
        )
        == 0
    )
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    limit = 16 * small_photo.shape[0] * small_photo.shape[1] / 1e6 * 0.9  # just under this photo's x4 result
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "limited.png"),
                "--server",
                str(worker.path),
                "--max-pixels",
                str(limit),
            ]
        )
        == 1
    )
    assert not (tmp_path / "limited.png").exists()  # --max-pixels holds through the worker too


def test_protocol_document_states_the_version_in_the_code():
    text = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    assert re.search(r"Protocol version: \*\*(\d+\.\d+)\*\*", text).group(1) == protocol.version_text()
    for code in errors.ERRORS:
        assert f"`{code}`" in text, f"error code {code} is not documented"
    worker_page = (Path(__file__).resolve().parents[2] / "docs" / "WORKER.md").read_text()  # the worker's readers
    assert f"[docs/PROTOCOL.md](PROTOCOL.md), version {protocol.version_text()}." in worker_page.replace("\n", " ")


def wait_for_model(client, timeout=240.0) -> ModelState:
    deadline = time.monotonic() + timeout
    while (model := client.hello().model).state not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
    return model


# Each backend once, each start once: a trace on the CPU takes most of a minute (the suite's time is counted)
@pytest.mark.parametrize(("preload", "backend"), [(False, "eager"), (True, "no_such_backend")])
def test_a_compiling_worker_compiles_before_jobs_run_and_serves_uncompiled_where_compiling_fails(
    tmp_path, tiny_weights, pipeline, backend, preload
):
    """--compile compiles right after loading (at start with --preload, else before the first job runs).
    Traced by TorchDynamo as on a GPU, then run by its eager backend (inductor's code generation takes
    minutes on a CPU); a backend that does not exist stands for a machine where compiling fails, and
    the worker must serve anyway."""
    env = dict(os.environ, TORCH_COMPILE_OVERRIDE_BACKENDS=f">=0:{backend}")
    options = ["--compile", "--preload"] if preload else ["--compile"]
    worker = WorkerProcess(tmp_path / backend, tiny_weights.noise_predictor.parent, *options, env=env).wait_ready()
    try:
        with worker.client(timeout=60) as client:
            if preload:
                wait_for_model(client)
            image, seen = noise_image(96), []
            upscaled = client.upscale(image.tobytes(), 96, 96, 3, "u8", UpscaleRequest(seed=3), on_progress=seen.append)
            model = client.hello().model
    finally:
        worker.stop()
    result = np.frombuffer(upscaled.pixels, np.uint8).reshape(upscaled.height, upscaled.width, 3)
    assert model.state == "ready" and result.shape == (384, 384, 3)
    assert worker.log.read_text().count("model loaded") == 1  # a failed compile restores the networks: no second copy
    stages = [progress.stage for progress in seen]
    assert stages[: stages.index("tiles")] == (
        [] if preload else ["loading model", "compiling"]
    )  # the bar says why it waits
    assert "compiling" not in stages[stages.index("tiles") :]  # the job itself compiled nothing
    if backend == "eager":
        assert model.compile_seconds > 0 and model.compile_error is None
        assert upscaled.report["tiling"]["static_shapes"]
    else:
        assert "no_such_backend" in model.compile_error and not upscaled.report["tiling"]["static_shapes"]
        np.testing.assert_array_equal(
            result, pipeline.upscale(image, UpscaleRequest(seed=3)).image
        )  # served, uncompiled
