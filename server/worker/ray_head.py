"""What `invsr serve --ray ADDRESS` does when the Ray cluster's head (its GCS) is lost, and when it is back.

The loss is noticed within seconds (cluster/head.py probes the head's address). Then the worker says so in
its log and in `hello`/`status` (the model's state "unavailable", with the cause), refuses new jobs with
that message, lets the jobs running finish while their batches come back (GRACE_S at most, and well
before Ray would end the process), fails the rest with it, and leaves Ray (`ray.shutdown()`: what keeps the
process alive). It goes on answering every other message. Once a head accepts connections at that
address again, the worker joins it (a new cluster: new actors, loaded at once if the model had been) and
serves jobs again.
"""

from __future__ import annotations

import logging
import time

from invsr.wire.errors import DeviceError

log = logging.getLogger("invsr.worker")
GRACE_S = 15.0  # the jobs running when the head is lost may finish in this time, while batches come back
SHUTDOWN_S = 5.0  # what `ray.shutdown()` takes without a head (measured, Ray 2.60): done before Ray's timeout


class HeadLoss:
    """Watches the head of the cluster that `model` (jobs.ModelHolder) joined at `address`; `on_rejoined()`
    is called once joined again, where the model should be loaded at once."""

    def __init__(self, model, address: str, on_rejoined):
        import ray

        from invsr_server.cluster.head import HeadWatch

        self.model, self.address, self.on_rejoined = model, address, on_rejoined
        self.reload = False  # whether the model was loaded when the head was lost (or is to be at start)
        self.watch = HeadWatch(ray.get_runtime_context().gcs_address, self._lost, self._back)

    def start(self) -> HeadLoss:
        self.watch.start()
        return self

    def stop(self) -> None:
        self.watch.stop()

    def _lost(self) -> None:
        import ray

        noticed = time.monotonic()
        failure = DeviceError(
            f"the Ray cluster's head at {self.address} is unreachable since {time.strftime('%H:%M:%S')}; jobs are "
            "refused until it is back: start it again there (`ray start --head` with the same port), and this "
            "worker rejoins it by itself"
        )
        log.error("%s", failure)
        pipeline = self.model.lose(failure)
        self.reload = pipeline is not None or self.model.config.preload
        if pipeline is not None:
            pipeline.abandon(failure, _grace())
        ray.shutdown()
        log.warning("left the lost Ray cluster %.1f s after noticing its head gone", time.monotonic() - noticed)

    def _back(self) -> bool:
        import ray

        from invsr_server.cluster.ray_cluster import connect

        log.warning("a Ray head accepts connections at %s again: joining it", self.address)
        started = time.monotonic()
        try:
            connect(self.address)
        except Exception as error:  # its port open before its GCS is ready, or not the head we need
            log.warning("cannot join the Ray cluster at %s yet (%s); trying again shortly", self.address, error)
            ray.shutdown()  # whatever half of Ray the attempt started
            return False
        self.model.regain()
        log.warning("joined the Ray cluster at %s again in %.1f s", self.address, time.monotonic() - started)
        if self.reload:
            self.on_rejoined()
        return True


def _grace() -> float:
    """How long the running jobs may go on: leaving Ray must be over before Ray's reconnect timeout ends the
    process, counted from its driver's first failed call to the head (which may come soon after the loss)."""
    from invsr_server.cluster.head import reconnect_timeout

    return max(0.0, min(GRACE_S, reconnect_timeout() / 2 - SHUTDOWN_S))
