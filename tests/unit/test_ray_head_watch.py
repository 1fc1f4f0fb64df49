"""The watch on a Ray head's address (cluster/head.py), on a real listening socket standing in for the GCS:
closed, it is lost after a few failed probes; listening again at the same port, it is back, and a rejoin that
fails is tried again."""

import socket
import threading
import time

from invsr_server.cluster import head


def listening(port: int = 0) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen()
    return server


def test_a_closed_head_is_lost_within_seconds_and_back_when_it_listens_again(monkeypatch):
    monkeypatch.setattr(head, "REJOIN_EVERY_S", 0.2)
    server = listening()
    port = server.getsockname()[1]
    events, lost, back = [], threading.Event(), threading.Event()
    answers = iter([False, True])  # the first rejoin fails (a GCS not ready yet): tried again

    def on_back():
        events.append("back")
        joined = next(answers)
        if joined:
            back.set()
        return joined

    watch = head.HeadWatch(f"127.0.0.1:{port}", lambda: events.append("lost") or lost.set(), on_back).start()
    try:
        time.sleep(1.5)
        assert events == [], "a head that accepts connections is not lost"
        server.close()
        closed = time.monotonic()
        assert lost.wait(10) and time.monotonic() - closed < 5
        server = listening(port)
        assert back.wait(10)
        assert events == ["lost", "back", "back"]
    finally:
        watch.stop()
        server.close()


def test_reconnect_timeout_is_rays_setting_or_its_default(monkeypatch):
    monkeypatch.delenv("RAY_gcs_rpc_server_reconnect_timeout_s", raising=False)
    assert head.reconnect_timeout() == 60.0
    monkeypatch.setenv("RAY_gcs_rpc_server_reconnect_timeout_s", "15")
    assert head.reconnect_timeout() == 15.0
