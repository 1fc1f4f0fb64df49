"""What testing the worker from outside found (issue 12), each as real worker processes on real sockets:
no failure leaves a client waiting forever, no message a peer sends stops the worker or gets the wrong
answer, only a job's own client may cancel it, and the worker's files are private to its user."""

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
from worker_helpers import RawZmtpPeer, WorkerProcess

from invsr.wire import errors
from invsr.wire.protocol import Message, sign, version_text
from invsr.wire.replies import ModelState
from invsr.wire.request import UpscaleRequest

VERSION = version_text()

LONG_JOB = {"tile": 32, "overlap": 8, "steps": 5}  # about 10 s on the test weights: 121 tiles of a 256 x 256 image
ANSWER_WITHIN = 120.0  # seconds: far more than any of these jobs takes; only a hang runs into it


@pytest.fixture(scope="module")
def worker(tmp_path_factory, tiny_weights):
    folder = tmp_path_factory.mktemp("hardening")
    log_file = folder / "run" / "private" / "worker.log"  # in folders the worker has to create
    with WorkerProcess(folder, tiny_weights.noise_predictor.parent, "--preload", log_file=log_file) as process:
        yield process.wait_ready()


@pytest.fixture
def client(worker):
    with worker.client() as c:
        yield c


def noise_image(side, seed=0, dtype=np.uint8):
    image = np.random.default_rng(seed).random((side, side, 3))
    return (image * 255).astype(np.uint8) if dtype == np.uint8 else image.astype(dtype)


def upscale(client, image, on_progress=None, should_cancel=None, **params):
    dtype = {"uint8": "u8", "float32": "f32"}[str(image.dtype)]
    return client.upscale(
        image.tobytes(),
        image.shape[1],
        image.shape[0],
        image.shape[2],
        dtype,
        UpscaleRequest(**params),
        on_progress=on_progress,
        should_cancel=should_cancel,
    )


def within(seconds, call):
    """call()'s result, raising what it raises; the test fails if it has not returned after `seconds`
    (a client whose heartbeats are answered waits for its job forever)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds:g} s: the client would wait forever"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def signed_header(key, text: str, buffers=()):
    """Frames of a message with exactly this header text (JSON that Python's json module reads: NaN,
    Infinity, integers of hundreds of digits), signed with the worker's secret as a loopback worker signs
    (buffers by their lengths alone)."""
    header = text.encode()
    return [sign(key, header, buffers, signed_buffers=False), header, *buffers]


def reply_to(sock, timeout=30.0):
    assert sock.poll(int(timeout * 1000)), "no reply"
    return sock.recv_multipart()


def replies_until_the_end(sock, key) -> list[Message]:
    """A raw socket's replies to one upscale, up to its result or error."""
    messages = [Message.decode(key, reply_to(sock), signed_buffers=False)]
    while messages[-1].type not in ("result", "error"):
        messages.append(Message.decode(key, reply_to(sock), signed_buffers=False))
    return messages


def copy_of(weights: Path, folder: Path) -> Path:
    shutil.copytree(weights, folder)
    return folder


# --- any failure in loading or in a job fails that job, never the executor ----------------------------------


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "on-first-job"])
def test_a_model_that_fails_to_load_fails_the_job_and_the_next_job_loads_it_again(tmp_path, tiny_weights, preload):
    """A noise predictor's widths that are not JSON: with --preload the executor thread used to die of it,
    and every job waited forever while the heartbeats said all was well."""
    weights = copy_of(tiny_weights.noise_predictor.parent, tmp_path / "weights")
    config = next(weights.glob("noise_predictor*.json"))
    good = config.read_text()
    config.write_text("{ not json")
    options = ["--preload"] if preload else []
    with WorkerProcess(tmp_path / "w", weights, *options) as broken, broken.wait_ready().client() as c:
        with pytest.raises(errors.InvSRError) as failure:
            within(ANSWER_WITHIN, lambda: upscale(c, noise_image(32)))
        assert failure.value.code in ("internal", "bad_checkpoint") and str(failure.value)  # a code and a message
        assert c.hello().model.state == "failed"
        config.write_text(good)  # the user mends the file: the next job loads the model
        result = within(ANSWER_WITHIN, lambda: upscale(c, noise_image(32)))
        assert (result.width, result.height) == (128, 128)
        assert c.hello().model.state == "ready"


def test_an_exception_no_one_foresaw_while_loading_fails_the_job_with_internal(tmp_path, tiny_weights):
    """A UNet config with an attention head width of 0 makes diffusers divide by zero: not an error of the
    library's own (a trigger that became one would test less: then choose another)."""
    weights = copy_of(tiny_weights.noise_predictor.parent, tmp_path / "weights")
    unet_config = weights / "sd-turbo" / "unet" / "config.json"
    unet_config.write_text(json.dumps(dict(json.loads(unet_config.read_text()), attention_head_dim=0)))
    with WorkerProcess(tmp_path / "w", weights, "--preload") as broken, broken.wait_ready().client() as c:
        for _ in range(2):  # the executor survives the failure at start and the one at the job
            with pytest.raises(errors.Internal, match="ZeroDivisionError.*see the worker log"):
                within(ANSWER_WITHIN, lambda: upscale(c, noise_image(32)))
        model = c.hello().model
        assert model.state == "failed" and model.code == "internal" and "ZeroDivisionError" in model.error
        assert c.status()["jobs"] == []
    assert "ZeroDivisionError" in broken.log.read_text()  # with its traceback, for whoever mends it


EXECUTOR_DIES = """
import time
import invsr_server.worker.jobs

def a_library_that_exits(self, on_stage=None):
    time.sleep(3)  # long enough for a second job to queue behind this one
    raise SystemExit("a library called sys.exit()")

invsr_server.worker.jobs.ModelHolder.get = a_library_that_exits
"""


def test_should_the_executor_thread_end_its_jobs_fail_and_hello_says_so(tmp_path):
    """No input makes the executor thread end any more, so the test makes a library exit inside it (code
    run in the worker's process before it starts): SystemExit is no Exception and ends the thread. The
    I/O thread notices, fails the running and the queued job, refuses new ones, and `hello` says why."""
    with WorkerProcess(tmp_path, None, "--client-timeout", "600", prelude=EXECUTOR_DIES) as doomed:
        sock = doomed.wait_ready().raw_socket()
        key = doomed.connection.key_bytes
        pixels = noise_image(16).tobytes()
        for request_id in ("first", "second"):
            header = json.dumps(
                {
                    "type": "upscale",
                    "protocol": VERSION,
                    "sent": time.time(),
                    "id": request_id,
                    "width": 16,
                    "height": 16,
                    "channels": 3,
                    "dtype": "u8",
                    "params": {},
                }
            )
            sock.send_multipart(signed_header(key, header, [pixels]))
            assert Message.decode(key, reply_to(sock)).type == "accepted"
        ends = {}
        for _ in range(2):
            message = replies_until_the_end(sock, key)[-1]
            ends[message.fields["re"]] = message.fields
        for end in ends.values():
            assert end["code"] == "internal"
            assert re.search(r"executor thread stopped \(SystemExit: a library", end["message"])
            assert "restart the worker" in end["message"]
        assert set(ends) == {"first", "second"}
        sock.close()
        with doomed.client() as c:
            model = c.hello().model
            assert model.state == "failed" and "can no longer run jobs" in model.error
            assert ModelState.from_dict(c.status()["model"]) == model and c.status()["jobs"] == []
            with pytest.raises(errors.Internal, match="can no longer run jobs"):  # refused on arrival
                within(30, lambda: upscale(c, noise_image(16)))
            assert c.ping() < 5.0


# --- what a peer sends never stops the worker, and gets the right answer -------------------------------------


def answer(worker, header_text: str, buffers=()) -> Message:
    sock = worker.raw_socket()
    try:
        sock.send_multipart(signed_header(worker.connection.key_bytes, header_text, buffers))
        return Message.decode(worker.connection.key_bytes, reply_to(sock))
    finally:
        sock.close()


def test_a_huge_sending_time_with_a_nan_id_is_refused_and_the_worker_goes_on(worker, client):
    """This one signed message used to end the worker: the replay check overflowed, and the catch-all's
    reply echoed the NaN id, which JSON cannot encode, from inside its except clause."""
    reply = answer(worker, f'{{"type": "ping", "protocol": "{VERSION}", "sent": {"9" * 401}, "id": NaN}}')
    assert reply.type == "error" and reply.fields["code"] == "bad_message" and "re" not in reply.fields
    assert "'sent' must be a finite number" in reply.fields["message"]
    assert worker.process.poll() is None and client.ping() < 5.0


@pytest.mark.parametrize("sent", ["NaN", "Infinity", "-Infinity", "9" * 401, "-" + "9" * 401, "1e308", "true", '"now"'])
def test_only_a_finite_number_is_a_sending_time(worker, client, sent):
    reply = answer(worker, f'{{"type": "ping", "protocol": "{VERSION}", "sent": {sent}, "id": "t"}}')
    assert reply.type == "error" and reply.fields["code"] == "bad_message", reply.fields  # NaN used to pass
    assert reply.fields["re"] == "t"


@pytest.mark.parametrize("request_id", ["NaN", "Infinity", "1", "1e400", "[]", '{"a": NaN}', "null", "true"])
def test_only_a_string_is_a_request_id(worker, client, request_id):
    reply = answer(worker, f'{{"type": "ping", "protocol": "{VERSION}", "sent": {time.time()!r}, "id": {request_id}}}')
    assert reply.type == "error" and reply.fields["code"] == "bad_message" and "re" not in reply.fields
    assert "string 'id'" in reply.fields["message"]


@pytest.mark.parametrize("size", [{"width": 10**400}, {"height": 10**400}, {"width": 10**400, "height": 10**400}])
def test_an_output_size_of_hundreds_of_digits_is_an_invalid_request(worker, client, size):
    header = json.dumps(
        {
            "type": "upscale",
            "protocol": VERSION,
            "sent": time.time(),
            "id": "big",
            "width": 16,
            "height": 16,
            "channels": 3,
            "dtype": "u8",
            "params": size,
        }
    )
    reply = answer(worker, header, [noise_image(16).tobytes()])
    assert reply.type == "error" and reply.fields["code"] == "invalid_request", reply.fields  # was `internal`
    assert client.ping() < 5.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_float_pixels_are_refused_on_arrival(worker, client, bad):
    image = noise_image(16, dtype=np.float32)
    image[5, 7, 1] = bad
    header = json.dumps(
        {
            "type": "upscale",
            "protocol": VERSION,
            "sent": time.time(),
            "id": "nan",
            "width": 16,
            "height": 16,
            "channels": 3,
            "dtype": "f32",
            "params": {},
        }
    )
    reply = answer(worker, header, [image.tobytes()])  # the first reply: never accepted, never queued
    assert reply.type == "error" and reply.fields["code"] == "invalid_image", reply.fields
    assert "NaN or infinite" in reply.fields["message"]


def test_finite_float_pixels_out_of_range_are_not_refused_on_arrival(worker, client):
    """Values above 1 (highlights) are the library's to judge when the job runs, not the arrival check's."""
    image = noise_image(16, dtype=np.float32) * 3.0e38  # finite, and their sum would overflow a float32
    sock = worker.raw_socket()
    key = worker.connection.key_bytes
    header = json.dumps(
        {
            "type": "upscale",
            "protocol": VERSION,
            "sent": time.time(),
            "id": "hdr",
            "width": 16,
            "height": 16,
            "channels": 3,
            "dtype": "f32",
            "params": {},
        }
    )
    sock.send_multipart(signed_header(key, header, [image.tobytes()]))
    replies = replies_until_the_end(sock, key)
    sock.close()
    assert replies[0].type == "accepted"


# --- only a job's own client may cancel it ------------------------------------------------------------------


class LongJob:
    """A long upscale run by a client of its own in a thread; its job id is learnt from its progress."""

    def __init__(self, client):
        self.client, self.ids, self.stop = client, [], threading.Event()
        self.outcome: list = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        try:
            upscale(
                self.client,
                noise_image(256),
                on_progress=lambda progress: self.ids.append(progress.job),
                should_cancel=self.stop.is_set,
                **LONG_JOB,
            )
            self.outcome.append("finished")
        except errors.InvSRError as error:
            self.outcome.append(error)

    def job_id(self, timeout=60.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.ids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.ids, "the long job never reported progress"
        return self.ids[0]

    def end(self):
        self.stop.set()
        self.thread.join(ANSWER_WITHIN)
        return self.outcome[0]


def test_another_client_cannot_see_the_id_of_a_job_nor_cancel_it(worker, client):
    with worker.client() as owner:
        job = LongJob(owner)
        try:
            job_id = job.job_id()
            (shown,) = client.status()["jobs"]
            assert shown["yours"] is False and "job" not in shown  # the handle that cancels it stays hidden
            with pytest.raises(errors.UnknownJob, match="of this client"):
                client.cancel(job_id)  # even knowing the id
            assert [j["state"] for j in client.status()["jobs"]] == ["running"]
        finally:
            outcome = job.end()
    assert isinstance(outcome, errors.Cancelled) and "cancelled by the client" in str(outcome)  # by its own client


def test_with_curvezmq_the_same_key_may_cancel_from_another_connection_and_no_other_key(tmp_path, tiny_weights):
    from invsr.wire.keys import load_key_pair, make_key_pair

    make_key_pair(tmp_path / "server", "server")
    alice = load_key_pair(make_key_pair(tmp_path / "allowed", "alice")[1])
    bob = load_key_pair(make_key_pair(tmp_path / "allowed", "bob")[1])
    options = ["--curve-keys", str(tmp_path / "server"), "--allowed-keys", str(tmp_path / "allowed"), "--preload"]
    with WorkerProcess(tmp_path / "w", tiny_weights.noise_predictor.parent, *options) as shared:
        shared.wait_ready()
        with (
            shared.client(client_keys=alice) as laptop,
            shared.client(client_keys=alice) as desktop,
            shared.client(client_keys=bob) as other,
        ):
            job = LongJob(laptop)
            try:
                job_id = job.job_id()
                (seen_by_bob,) = other.status()["jobs"]
                assert seen_by_bob["yours"] is False and "job" not in seen_by_bob
                with pytest.raises(errors.UnknownJob):
                    other.cancel(job_id)
                (seen_by_alice,) = desktop.status()["jobs"]
                assert seen_by_alice["yours"] is True and seen_by_alice["job"] == job_id
                assert desktop.cancel(job_id)["job"] == job_id  # the same person, on another connection
            finally:
                outcome = job.end()
            assert isinstance(outcome, errors.Cancelled)


# --- the replay guard's memory --------------------------------------------------------------------------------


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the worker's resident memory from /proc")
def test_a_worker_remembering_fifty_thousand_pings_grows_by_a_few_megabytes(tmp_path):
    """Every signed message is remembered for 30 minutes, to refuse its replay: that used to cost a worker
    25 MB per 100,000 messages (250 MB at the bound); now about 3."""
    with WorkerProcess(tmp_path, None) as idle:
        sock = idle.wait_ready().raw_socket()
        key = idle.connection.key_bytes

        def pings(count, in_flight=500):
            for _ in range(0, count, in_flight):
                for _ in range(in_flight):
                    sock.send_multipart(
                        signed_header(
                            key, json.dumps({"type": "ping", "protocol": VERSION, "sent": time.time(), "id": "p"})
                        )
                    )
                for _ in range(in_flight):
                    reply_to(sock)

        pings(5_000)  # the worker's own buffers and caches settle
        before = resident_bytes(idle.process.pid)
        pings(50_000)
        grown = resident_bytes(idle.process.pid) - before
        sock.close()
    assert grown * 2 < 12e6, f"{grown * 2 / 1e6:.1f} MB per 100,000 pings"


# --- the worker's files are its user's only -------------------------------------------------------------------


def test_the_run_time_folder_is_0700_and_the_log_0600(worker):
    assert worker.log.parent.stat().st_mode & 0o777 == 0o700
    assert worker.log.parent.parent.stat().st_mode & 0o777 == 0o700  # every folder it had to make
    assert worker.log.stat().st_mode & 0o777 == 0o600
    assert "serving on" in worker.log.read_text()


def test_logs_left_readable_by_an_older_version_become_private_and_rotated_logs_stay_so(tmp_path):
    import logging

    from invsr_server.worker.worker import PrivateLog, setup_logging

    log_file = tmp_path / "worker.log"
    for old in (log_file, tmp_path / "worker.log.1"):
        old.write_text("job 1234 queued: 4000x3000\n")
        old.chmod(0o644)
    setup_logging(log_file)
    assert [p.stat().st_mode & 0o777 for p in (log_file, tmp_path / "worker.log.1")] == [0o600, 0o600]
    rotating = PrivateLog(tmp_path / "rotating.log", maxBytes=200, backupCount=2)
    logger = logging.getLogger("invsr.test-rotation")
    logger.addHandler(rotating)
    try:
        for n in range(20):
            logger.warning("job %d queued: 4000x3000", n)
    finally:
        logger.removeHandler(rotating)
        rotating.close()
    logs = sorted(tmp_path.glob("rotating.log*"))
    assert len(logs) == 3 and all(p.stat().st_mode & 0o777 == 0o600 for p in logs)


def test_a_connection_file_folder_that_does_not_exist_is_made_private(tmp_path):
    from invsr.wire import connection

    path = tmp_path / "a" / "b" / "worker.json"
    old_umask = os.umask(0o022)
    try:
        connection.write(path, connection.Connection("tcp://127.0.0.1:9", "00" * 32, "3.0"))
    finally:
        os.umask(old_umask)
    assert [(tmp_path / p).stat().st_mode & 0o777 for p in ("a", "a/b", "a/b/worker.json")] == [0o700, 0o700, 0o600]


# --- a failed compile serves the networks as loaded -----------------------------------------------------------


def test_undo_optimize_restores_the_very_networks_loaded_and_their_results(tiny_weights, pipeline, small_photo):
    """What a worker does where compiling fails (test_worker.py runs it so, in a worker process): the same
    modules as loaded, not a second copy of the weights, giving the eager results byte for byte."""
    from invsr.pipeline import InvSRPipeline

    mine = InvSRPipeline.load(tiny_weights, device="cpu", dtype="fp32")
    models = mine.models

    def networks():
        return [id(n) for n in (models.unet, models.vae.encoder, models.vae.decoder, models.noise_predictor)]

    loaded = networks()
    mine.optimize(compile=True)
    assert networks() != loaded and mine.static_shapes
    mine.undo_optimize()
    assert networks() == loaded  # the very modules, not copies
    assert not mine.static_shapes and "optimized" not in mine.load_report
    np.testing.assert_array_equal(mine.upscale(small_photo).image, pipeline.upscale(small_photo).image)


# --- a peer with the password can neither stall, starve nor crash the worker (issue 23) -----------------------


@pytest.mark.parametrize("dtype", [{"name": "u8"}, ["u8"], [], {}])
def test_a_dtype_that_is_not_a_string_is_a_bad_message(worker, client, dtype):
    """An object or a list made the lookup among the pixel types raise TypeError: answered `internal`."""
    header = json.dumps(
        {
            "type": "upscale",
            "protocol": VERSION,
            "sent": time.time(),
            "id": "dtype",
            "width": 16,
            "height": 16,
            "channels": 3,
            "dtype": dtype,
            "params": {},
        }
    )
    reply = answer(worker, header, [noise_image(16).tobytes()])
    assert reply.type == "error" and reply.fields["code"] == "bad_message", reply.fields
    assert reply.fields["re"] == "dtype" and "dtype must be a string" in reply.fields["message"]
    assert client.ping() < 5.0


SMALL_REPLAY_MEMORY = """
import invsr_server.worker.replay as replay

defaults = list(replay.ReplayGuard.__init__.__defaults__)
defaults[1] = 2000  # the count bound: a flood beyond it takes seconds, not a million messages
replay.ReplayGuard.__init__.__defaults__ = tuple(defaults)
"""


def test_a_flood_of_pings_dated_half_an_hour_ahead_locks_no_one_out(tmp_path):
    """Valid pings dated 29 minutes ahead, beyond the replay guard's count bound (made 2,000 here): the guard
    used to forget the slice of the future they fell in, and refuse every honest message for half an hour as
    "sent before a flood". Now they are refused on arrival, and everyone else is served."""
    with WorkerProcess(tmp_path, None, prelude=SMALL_REPLAY_MEMORY) as flooded:
        sock = flooded.wait_ready().raw_socket()
        key = flooded.connection.key_bytes
        replies = []
        for _ in range(6):
            for _ in range(500):
                ahead = json.dumps({"type": "ping", "protocol": VERSION, "sent": time.time() + 1740, "id": "f"})
                sock.send_multipart(signed_header(key, ahead))
            replies += [Message.decode(key, reply_to(sock), signed_buffers=False) for _ in range(500)]
        sock.close()
        with flooded.client() as honest:
            assert honest.hello().pid == flooded.process.pid  # used to raise "sent before a flood"
            assert honest.ping() < 5.0
    assert {reply.fields.get("code") for reply in replies} == {"bad_message"}
    assert "in the future" in replies[-1].fields["message"]


def first_replies(sock, key, request_ids, timeout=60.0) -> dict:
    """The first reply (accepted, or an error) to each upscale sent on a raw socket; progress that comes
    meanwhile is read and dropped."""
    first, deadline = {}, time.monotonic() + timeout
    while set(first) != set(request_ids) and time.monotonic() < deadline:
        if sock.poll(int(max(0.0, deadline - time.monotonic()) * 1000)):
            message = Message.decode(key, sock.recv_multipart(), signed_buffers=False)
            first.setdefault(message.fields.get("re"), message)
    assert set(first) == set(request_ids), f"no first reply to {set(request_ids) - set(first)}"
    return first


def send_long_upscales(sock, key, request_ids):
    pixels = noise_image(256).tobytes()
    for request_id in request_ids:
        fields = {"type": "upscale", "protocol": VERSION, "sent": time.time(), "id": request_id}
        fields.update(width=256, height=256, channels=3, dtype="u8", params=LONG_JOB)
        sock.send_multipart(signed_header(key, json.dumps(fields), [pixels]))


def test_one_client_cannot_take_every_place_in_the_queue(tmp_path, tiny_weights):
    """Twenty jobs from one connection used to take all nine places (one running, eight waiting), and the
    next client was told `busy`. Each client (a connection, or with CurveZMQ a key) now has its share."""
    options = ["--client-timeout", "600", "--queue-length", "8"]
    with WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, *options) as shared:
        key = shared.wait_ready().connection.key_bytes
        greedy, other = shared.raw_socket(), shared.raw_socket()
        try:
            many = [f"greedy-{n}" for n in range(20)]
            send_long_upscales(greedy, key, many)
            answers = first_replies(greedy, key, many)
            send_long_upscales(other, key, ["other"])
            (reply,) = first_replies(other, key, ["other"]).values()
        finally:
            greedy.close()  # their jobs are cancelled with the connection
            other.close()
    accepted = [a for a in answers.values() if a.type == "accepted"]
    refused = [a for a in answers.values() if a.type == "error"]
    assert len(accepted) == 4 and len(refused) == 16, [a.fields.get("code") for a in answers.values()]
    assert {a.fields["code"] for a in refused} == {"busy"} and "jobs of this client" in refused[0].fields["message"]
    assert reply.type == "accepted", reply.fields  # used to be `busy`


START_FROM_A_CLIENT = """
import os, sys
from invsr.wire.client import connect

os.umask(0o022)  # a common umask: folders 0755 and files 0644 unless made otherwise
command = [sys.executable, "-m", "invsr_server", "serve", "--device", "cpu", "--weights", sys.argv[1]]
with connect(start_command=command) as client:
    print(client.connection.pid)
"""


def test_a_worker_started_by_a_client_keeps_its_files_private_without_xdg_runtime_dir(tmp_path, tiny_weights):
    """The plug-in and `invsr upscale` start a worker through invsr.wire.client.connect when none runs. Without
    XDG_RUNTIME_DIR its folder (~/.cache/invsr/run) used to be made 0755 and worker-start.log 0644, readable by
    every user of the machine; now as private as `invsr serve` makes them. An older version's start log,
    left readable, becomes private."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "INVSR_RUNTIME_DIR")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(sys.path))
    run = home / ".cache" / "invsr" / "run"
    weights = str(tiny_weights.noise_predictor.parent)
    started_pids = []
    try:
        for older_log in (False, True):
            if older_log:  # as an older version left it, with no worker running
                (run / "worker-start.log").chmod(0o644)
            done = subprocess.run(
                [sys.executable, "-c", START_FROM_A_CLIENT, weights],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            started_pids.append(int(done.stdout.split()[-1]))
            modes = {p.relative_to(home): p.stat().st_mode & 0o777 for p in (home / ".cache", run.parent, run)}
            modes[Path("start log")] = (run / "worker-start.log").stat().st_mode & 0o777
            assert modes == {Path(p): 0o700 for p in (".cache", ".cache/invsr", ".cache/invsr/run")} | {
                Path("start log"): 0o600
            }
            os.kill(started_pids[-1], signal.SIGTERM)
            wait_for_exit(started_pids[-1])
    finally:
        for pid in started_pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def wait_for_exit(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


def refused_request(sock, key) -> Message:
    header = json.dumps({"type": "frobnicate", "protocol": VERSION, "sent": time.time(), "id": "r"})
    sock.send_multipart(signed_header(key, header))
    return Message.decode(key, reply_to(sock), signed_buffers=False)


@pytest.mark.skipif(sys.platform != "linux", reason="the routing ids of libzmq's counter, as glibc's rand() gives them")
def test_what_the_log_shows_gives_no_routing_id_to_claim(tmp_path):
    """The log named connections by their routing ids ("refused a request from 006ab4f3e7"): a peer that read it
    knew the worker's counter, claimed the next ids as its own, and the next client's connection aborted libzmq
    (SIGABRT). Now the log names a connection by a keyed hash of its id: whatever the log shows, taken as ids
    and their successors, claims nothing the worker will give."""
    with WorkerProcess(tmp_path, None) as worker:
        key = worker.wait_ready().connection.key_bytes
        honest = worker.raw_socket()  # its id comes from the worker's counter
        chosen = worker.raw_socket_with_id(b"\0\x12\x34\x56\x78")  # a peer that picks its own
        for sock in (honest, chosen):
            assert refused_request(sock, key).fields["code"] == "unknown_operation"
        deadline = time.monotonic() + 10
        while worker.log.read_text().count("refused a request") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        shown = worker.log.read_text()
        assert shown.count("refused a request") == 2 and "0012345678" not in shown  # not even a chosen id
        claimers = []
        for name in set(re.findall(r"\b[0-9a-f]{8,}\b", shown)):  # any hex it shows, taken as an id
            for step in range(1, 4):
                claimed = ((int(name, 16) + step) % (1 << 40)).to_bytes(5, "big")
                claimers.append(worker.raw_socket_with_id(claimed))
                refused_request(claimers[-1], key)  # answered: the id is now held
        try:
            for _ in range(3):  # the next clients get the next ids of the counter
                with worker.client() as newcomer:
                    assert newcomer.hello().pid == worker.process.pid
            time.sleep(0.3)
            assert worker.process.poll() is None, worker.text_output()[-2000:]
        finally:
            for sock in [honest, chosen, *claimers]:
                sock.close()


def raw_peer(worker) -> RawZmtpPeer:
    return RawZmtpPeer(worker.connection.endpoint, worker.connection.socket_password)


def peak_resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def ping_header(request_id: str) -> bytes:
    return json.dumps({"type": "ping", "protocol": VERSION, "sent": time.time(), "id": request_id}).encode()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the worker's resident memory from /proc")
def test_a_message_of_a_million_frames_neither_stalls_the_worker_nor_holds_its_frames(tmp_path, tiny_weights):
    """A million empty frames (2 MB on the wire) behind a header: the worker used to take them all as Python
    objects and hash them, unresponsive for 14 to 24 s and 860 MB larger; a client waiting on its own job
    meanwhile declared the worker lost. Now the frames beyond the protocol's 16 buffers are dropped as they
    are read, the job's progress goes on reaching its client, and the sender is told why."""
    with WorkerProcess(tmp_path, tiny_weights.noise_predictor.parent, "--preload") as worker, worker.wait_ready():
        with worker.client() as waiting:
            job = LongJob(waiting)
            try:
                job.job_id()  # running, and its client waiting on it with heartbeats
                before = resident_bytes(worker.process.pid)
                flood = raw_peer(worker)
                flood.sock.sendall(
                    RawZmtpPeer.frame(bytes(32), more=True)
                    + RawZmtpPeer.frame(ping_header("flood"), more=True)
                    + RawZmtpPeer.frame(b"", more=True) * 999_999
                    + RawZmtpPeer.frame(b"")
                )
                sent = time.monotonic()
                signature, header = flood.receive_message(timeout=60)
                took = time.monotonic() - sent
                grown = resident_bytes(worker.process.pid) - before
                flood.close()
                with worker.client() as other:
                    assert other.ping() < 5.0
            finally:
                outcome = job.end()
    reply = json.loads(header)
    assert reply["code"] == "bad_message" and "at most 16 buffers" in reply["message"] and reply["re"] == "flood"
    assert isinstance(outcome, errors.Cancelled), outcome  # its own cancel, not WorkerLost
    assert grown < 200e6, f"the worker grew by {grown / 1e6:.0f} MB"
    print(f"a million frames refused in {took:.1f} s; the worker grew by {grown / 1e6:.0f} MB")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the worker's peak memory from /proc")
def test_an_oversized_header_is_refused_unread_and_the_frames_beside_it_dropped_at_once(tmp_path):
    """A 40 MB header (the limit is 64 KiB) was refused, but parsed in full to find a request id to answer,
    seconds of the worker's only I/O thread and several times the header in memory, with a 200 MB frame beside
    it held all along. Now nothing over the limit is parsed: the refusal names no request."""
    with WorkerProcess(tmp_path, None) as worker:
        worker.wait_ready()
        sock = worker.raw_socket()
        key = worker.connection.key_bytes
        sock.send_multipart(signed_header(key, ping_header("warm").decode()))
        reply_to(sock)
        before = peak_resident_bytes(worker.process.pid)
        header = b'{"type": "ping", "id": "huge", "padding": [' + b"0," * 20_000_000 + b"0]}"
        pixels = bytes(200_000_000)
        started = time.monotonic()
        sock.send_multipart([bytes(32), header, pixels], copy=False)
        reply = Message.decode(key, reply_to(sock), signed_buffers=False)
        took = time.monotonic() - started
        peak = peak_resident_bytes(worker.process.pid) - before
        sock.close()
    assert reply.fields["code"] == "bad_message" and "header over 65536 bytes" in reply.fields["message"]
    assert "re" not in reply.fields  # the id in it was never read
    sent = len(header) + len(pixels)
    assert peak < sent + 100e6, f"the worker's peak grew by {peak / 1e6:.0f} MB for {sent / 1e6:.0f} MB sent"
    print(f"refused in {took:.2f} s; peak +{peak / 1e6:.0f} MB for {sent / 1e6:.0f} MB sent")


def test_an_upload_cut_off_half_way_is_dropped_within_the_time_a_frame_may_take(tmp_path):
    """A peer that sends the start of a frame and stops used to keep the worker holding it for as long as the
    peer stayed connected. With a message limit of 2 MB a frame may take 5 s plus 1 s per 2 MB, and the
    worker's heartbeats come every 2 s: the connection is closed within about 8 s."""
    with WorkerProcess(tmp_path, None, "--max-message-mb", "2") as worker:
        worker.wait_ready()
        stalled = raw_peer(worker)
        started = time.monotonic()
        stalled.sock.sendall(RawZmtpPeer.frame(bytes(32), more=True) + RawZmtpPeer.frame(ping_header("cut"), more=True))
        stalled.start_frame(1_500_000, bytes(500_000))
        closed = stalled.closed_by_worker(timeout=20)
        took = time.monotonic() - started
        stalled.close()
        with worker.client() as other:
            assert other.ping() < 5.0
    assert closed and took < 12, f"closed: {closed}, after {took:.1f} s"
