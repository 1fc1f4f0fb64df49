"""What the signature covers on each transport (docs/PROTOCOL.md, "What the signature covers, and why"), with
real workers on real sockets: pixel frames are signed byte for byte only where the transport lets others alter
them (TCP beyond this machine without CurveZMQ, `--insecure`), and there a byte changed on the way is still
caught, in either direction; elsewhere only their number and lengths are, and results stay byte-identical. A
peer of protocol 3.0, which signed every frame, is told to update, not that its secret is wrong."""

import dataclasses
import os
import socket
import threading

import numpy as np
import pytest
import zmq
from protocol_helpers import signed_as_version_3_0
from worker_helpers import WorkerProcess

from invsr.wire import connection as connections
from invsr.wire import errors
from invsr.wire.client import Client, connect
from invsr.wire.protocol import Message, new_id, version_text


def test_only_tcp_beyond_this_machine_without_curvezmq_signs_every_byte():
    assert not connections.buffers_need_signing("ipc:///run/user/1000/invsr/sockets/worker.sock", curve=False)
    assert not connections.buffers_need_signing("tcp://127.0.0.1:47290", curve=False)
    assert not connections.buffers_need_signing("tcp://[::1]:47290", curve=False)
    assert not connections.buffers_need_signing("tcp://0.0.0.0:47290", curve=True)
    assert connections.buffers_need_signing("tcp://0.0.0.0:47290", curve=False)
    assert connections.buffers_need_signing("tcp://192.168.1.20:47290", curve=False)


def insecure_worker(folder, weights) -> WorkerProcess:
    return WorkerProcess(folder, weights, "--insecure", bind="tcp://0.0.0.0:*")


def via(connection: connections.Connection, port: int) -> connections.Connection:
    """The connection file as a client elsewhere would edit it: the same worker, reached at 127.0.0.1:PORT."""
    return dataclasses.replace(connection, endpoint=f"tcp://127.0.0.1:{port}")


def frames_of(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def test_each_worker_writes_its_choice_and_echoes_come_back_unchanged(tmp_path, weights, started):
    local = started(WorkerProcess(tmp_path / "local", weights))  # loopback TCP with the PLAIN password
    default = started(WorkerProcess(tmp_path / "default", weights, bind=None))  # the owner-only ipc socket
    insecure = started(insecure_worker(tmp_path / "insecure", weights))
    assert default.connection.endpoint.startswith("ipc://")
    assert [w.connection.signed_buffers for w in (local, default, insecure)] == [False, False, True]
    port = int(insecure.connection.endpoint.rsplit(":", 1)[1])
    payloads = [b"", frames_of(1, 1), frames_of(9 * 1024 * 1024 + 3, 2)]  # beyond two 4 MiB pieces
    for connection in (local.connection, default.connection, via(insecure.connection, port)):
        with Client(connection, timeout=30) as client:
            assert [bytes(b) for b in client.echo(payloads)] == payloads


class FlippingRelay:
    """A TCP relay between a client and a worker that inverts one byte of the stream in one direction, at
    `offset` bytes from its start: what anyone on the path of an unencrypted connection can do."""

    def __init__(self, upstream_port: int, towards_worker: bool, offset: int):
        self.upstream, self.towards_worker, self.offset = upstream_port, towards_worker, offset
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flipped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        inside, _ = self.listener.accept()
        outside = socket.create_connection(("127.0.0.1", self.upstream))
        threading.Thread(target=self._pump, args=(inside, outside, self.towards_worker), daemon=True).start()
        self._pump(outside, inside, not self.towards_worker)

    def _pump(self, source: socket.socket, target: socket.socket, flipping: bool) -> None:
        passed = 0
        try:
            while data := source.recv(1 << 16):
                if flipping and passed <= self.offset < passed + len(data):
                    data = bytearray(data)
                    data[self.offset - passed] ^= 0xFF
                    self.flipped = True
                passed += len(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("towards_worker", [True, False], ids=["request", "result"])
def test_where_frames_are_signed_a_pixel_byte_changed_on_the_way_is_refused(tmp_path, weights, started, towards_worker):
    worker = started(insecure_worker(tmp_path / "w", weights))
    port = int(worker.connection.endpoint.rsplit(":", 1)[1])
    payload = frames_of(8 * 1024 * 1024, 3)
    with Client(via(worker.connection, port), timeout=30) as client:  # the untouched path first
        assert bytes(client.echo([payload])[0]) == payload
    relay = FlippingRelay(port, towards_worker, offset=1 << 20)  # deep inside the pixel frame, past every header
    try:
        with Client(via(worker.connection, relay.port), timeout=30) as client:
            with pytest.raises(errors.Unauthorized, match="wrong or missing signature"):
                client.echo([payload])
        assert relay.flipped
    finally:
        relay.close()
    with Client(via(worker.connection, port), timeout=30) as client:  # and the worker serves on
        assert client.ping() < 5


def test_a_3_0_client_is_told_to_update_not_that_its_secret_is_wrong(tmp_path, weights, started):
    worker = started(WorkerProcess(tmp_path / "w", weights))
    key = worker.connection.key_bytes
    sock = worker.raw_socket()
    try:
        for buffers in ((), (frames_of(1000, 4),)):  # a 3.0 `hello`, then a 3.0 `echo` with pixels signed its way
            request_id = new_id()
            sock.send_multipart(signed_as_version_3_0(key, {"type": "echo", "id": request_id}, buffers))
            assert sock.poll(10_000), "no answer"
            reply = Message.decode(key, sock.recv_multipart(), signed_buffers=False)
            # answering its request, which a 3.0 client waits for (it takes any other error for a sign of life)
            assert reply.fields["code"] == "protocol_version" and reply.fields["re"] == request_id
            assert "protocol 3.0 is not compatible with this side's " + version_text() in reply.fields["message"]
            assert "update the plug-in and the worker together" in reply.fields["message"]
    finally:
        sock.close()


def test_a_3_0_worker_is_named_with_how_to_stop_it(tmp_path):
    """A 3.1 client finds a running 3.0 worker: `connect` says to stop it, so that the next upscale starts this
    version's, rather than starting a second worker or blaming the secret."""
    old_worker = zmq.Context.instance().socket(zmq.ROUTER)
    port = old_worker.bind_to_random_port("tcp://127.0.0.1")
    key = bytes(range(32))

    def answer_hello_as_3_0():
        if old_worker.poll(10_000):
            peer, _signature, header = old_worker.recv_multipart()[:3]
            request = Message.decode(key, [_signature, header])
            old_worker.send_multipart(
                [peer, *signed_as_version_3_0(key, {"type": "hello", "re": request.fields["id"]})]
            )

    thread = threading.Thread(target=answer_hello_as_3_0)
    thread.start()
    path = tmp_path / "worker.json"
    connections.write(path, connections.Connection(f"tcp://127.0.0.1:{port}", key.hex(), "3.0", pid=os.getpid()))
    try:
        with pytest.raises(errors.VersionMismatch, match=r"protocol 3\.0 .* Stop it with `invsr serve --stop`"):
            connect(path, start_command=["must-not-start"])
    finally:
        thread.join()
        old_worker.close(linger=0)
