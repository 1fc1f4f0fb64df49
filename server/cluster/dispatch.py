"""The front's batches over the actors: fairly between jobs, and through lost and slow actors.

One thread, the dispatcher, sends batches and collects their results; the jobs' own threads submit an
image's batches, take the results it collects and end their jobs. All shared state is under one lock.

- Each actor holds at most DEPTH batches: one computing, the next waiting in its queue, so that it never
  idles for a round trip. A free place goes to the next job in turn that has batches waiting (round
  robin), so a small job's batches go between a large one's rather than after all of them.
- A batch's pixels (tiles/work.py: its tiles' crops, their noise and colour references) travel through
  Ray's object store; the image stays on the front, which also accumulates the outputs.
- An actor that dies (its process killed, its node lost) has its batches put back at the head of their
  jobs' queues, for the others. Jobs fail, with a DeviceError, only when no actor is left.
- A batch that runs far longer than its peers (SLOW_FACTOR times the median of recent batches, and at
  least `slow_floor` seconds) is given up and run elsewhere; its actor gets no more work until it
  answers ("slow" in `actors()`), as a hung GPU would not.
- The first result of a batch counts; any later one (from an actor that was given up on) is dropped.
- Ending a job (done, cancelled or failed) drops its waiting batches, cancels those in actors' queues and
  tells every actor to stop the one in progress at its next stage.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections import deque

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from invsr.wire.errors import Cancelled, DeviceError, Internal, InvSRError

log = logging.getLogger("invsr.ray")
DEPTH = 2  # batches an actor holds: one computing, one waiting
SLOW_FACTOR = 10.0  # a batch this many times slower than the median of recent ones is given up
SLOW_FLOOR = 60.0  # ... but never before this many seconds (real weights on a CPU take minutes a batch)
RECENT = 64  # batch durations the median is taken over
WAIT_S = 0.05  # the dispatcher's poll: how soon it notices a result, a new job or an end


class Actor:
    """One actor as the dispatcher sees it."""

    def __init__(self, name: str, handle, info: dict):
        self.name, self.handle, self.info = name, handle, info
        self.state = "ready"  # ready, slow (given up on; no new work until it answers) or dead
        self.error = ""  # why it is slow or dead
        self.slots: deque[Slot] = deque()  # its batches in the order it runs them
        self.batches = 0  # batches it has completed

    def describe(self) -> dict:
        info = self.info
        shown = {key: info.get(key) for key in ("device", "dtype", "host", "pid", "gpus")}
        return {"name": self.name, "state": self.state, **shown, "batches": self.batches, "in_flight": len(self.slots)}


class Slot:
    """One batch sent to one actor."""

    def __init__(self, job: JobBatches, bounds: tuple[int, int], actor: Actor, ref, started: float | None):
        self.job, self.bounds, self.actor, self.ref = job, bounds, actor, ref
        self.started = started  # when the actor began it; None while it waits behind another


class JobBatches:
    """One image's batches: those waiting to be sent, and the results for the job's thread."""

    def __init__(self, job_id: str, work, batch: int):
        self.id, self.work, self.batch = job_id, work, batch
        self.waiting: deque[tuple[int, int]] = deque(work.plan.batches(batch))
        self.counted: set[int] = set()  # first tiles of the batches whose results were taken
        self.results: queue.Queue = queue.Queue()  # (first tile, outputs), or the exception that ends the job
        self.by_actor: dict[str, int] = {}  # batches each actor computed, for the report
        self.ended = False

    def next_result(self, timeout: float):
        """(first tile, outputs) of the next batch that arrived, or None after `timeout` seconds; raises
        what failed the job."""
        try:
            item = self.results.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item


class Dispatcher:
    def __init__(self, actors: list[Actor], slow_factor: float = SLOW_FACTOR, slow_floor: float = SLOW_FLOOR):
        self.actors = actors
        self.slow_factor, self.slow_floor = slow_factor, slow_floor
        self.jobs: list[JobBatches] = []
        self.turn = 0  # the next job to offer a place to
        self.durations: deque[float] = deque(maxlen=RECENT)
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="invsr-ray-dispatch", daemon=True)
        self.thread.start()

    # --- for the jobs' threads -----------------------------------------------------------------------

    def submit(self, job_id: str, work, batch: int) -> JobBatches:
        """Queue the batches of `work` (tiles/work.TileWork), `batch` tiles at most each."""
        job = JobBatches(job_id, work, batch)
        with self.lock:
            self._check_some_left()
            self.jobs.append(job)
        return job

    def end(self, job: JobBatches) -> None:
        """The job is done, cancelled or failed: none of its batches is wanted any more."""
        with self.lock:
            self._end(job)

    def plan_facts(self, request, timeout: float = 60.0) -> tuple:
        """(geometry, tile settings) from an actor that answers (actor.TileActor.plan_facts)."""
        for actor in self._live():
            try:
                return ray.get(actor.handle.plan_facts.remote(request), timeout=timeout)
            except (RayActorError, GetTimeoutError):
                continue  # the dispatcher notices a dead one itself
            except RayTaskError as error:
                raise _job_failure(error, actor) from None
        with self.lock:
            self._check_some_left()
        raise DeviceError(f"no Ray actor answered within {timeout:g} s; see `invsr serve`'s status for their health")

    def describe(self) -> list[dict]:
        with self.lock:
            return [actor.describe() for actor in self.actors]

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=10)

    # --- the dispatcher thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping:
            with self.lock:
                self._assign()
                slots = {slot.ref: slot for actor in self.actors for slot in actor.slots}
            if not slots:
                time.sleep(WAIT_S)
                continue
            ready, _ = ray.wait(list(slots), num_returns=len(slots), timeout=WAIT_S)
            with self.lock:
                for ref in ready:
                    self._collect(slots[ref])
                self._give_up_slow()

    def _assign(self) -> None:
        for actor in self.actors:
            while actor.state == "ready" and len(actor.slots) < DEPTH and (job := self._next_job()) is not None:
                bounds = job.waiting.popleft()
                inputs = job.work.inputs(*bounds, job.batch)
                ref = actor.handle.compute.remote(job.id, job.work.recipe, inputs)
                actor.slots.append(Slot(job, bounds, actor, ref, None if actor.slots else time.monotonic()))

    def _next_job(self) -> JobBatches | None:
        """The next job in turn with a batch waiting."""
        count = len(self.jobs)
        for k in range(count):
            job = self.jobs[(self.turn + k) % count]
            if job.waiting:
                self.turn = (self.turn + k + 1) % count
                return job
        return None

    def _collect(self, slot: Slot) -> None:
        actor, job = slot.actor, slot.job
        if slot not in actor.slots:  # its actor was lost meanwhile
            return
        actor.slots.remove(slot)
        now = time.monotonic()
        if actor.slots and actor.slots[0].started is None:
            actor.slots[0].started = now
        try:
            outputs = ray.get(slot.ref)
        except RayActorError as error:
            self._lose(actor, error, slot)
            return
        except TaskCancelledError:
            return
        except RayTaskError as error:
            if not isinstance(error.cause, Cancelled) and not job.ended:
                job.results.put(_job_failure(error, actor))
                self._end(job)
            return
        if actor.state == "slow":  # it answered after all
            actor.state, actor.error = "ready", ""
        actor.batches += 1
        self.durations.append(now - slot.started if slot.started is not None else 0.0)
        start = slot.bounds[0]
        if job.ended or start in job.counted:  # ended, or computed elsewhere first: never counted twice
            return
        job.counted.add(start)
        if slot.bounds in job.waiting:  # put back for another actor, and not sent yet
            job.waiting.remove(slot.bounds)
        job.by_actor[actor.name] = job.by_actor.get(actor.name, 0) + 1
        job.results.put((start, outputs))

    def _give_up_slow(self) -> None:
        if not self.durations:
            return
        limit = max(self.slow_floor, self.slow_factor * statistics.median(self.durations))
        now = time.monotonic()
        for actor in self.actors:
            head = actor.slots[0] if actor.slots else None
            if actor.state != "ready" or head is None or head.started is None or now - head.started <= limit:
                continue
            if not any(other.state == "ready" for other in self.actors if other is not actor):
                continue  # nowhere else to run it: wait
            actor.state = "slow"
            actor.error = f"a batch has run {now - head.started:.0f} s, over {limit:.1f} s; given up and run elsewhere"
            log.warning("Ray actor %s: %s", actor.name, actor.error)
            self._put_back(actor.slots)
            for slot in list(actor.slots)[1:]:  # not started: no need to run them there
                ray.cancel(slot.ref)

    def _lose(self, actor: Actor, error: Exception, slot: Slot) -> None:
        """`slot`, taken off the actor, failed with `error`: the actor is gone, with the batches it held."""
        actor.state = "dead"
        actor.error = _first_line(error)
        log.warning("Ray actor %s is lost (%s); its batches go to the others", actor.name, actor.error)
        self._put_back([slot, *actor.slots])
        actor.slots.clear()
        if not self._live():
            failure = self._none_left()
            for job in list(self.jobs):
                job.results.put(failure)
                self._end(job)

    @staticmethod
    def _put_back(slots) -> None:
        """Return the batches of `slots` to the head of their jobs' queues, in their order."""
        for slot in reversed(slots):
            job = slot.job
            if not job.ended and slot.bounds[0] not in job.counted and slot.bounds not in job.waiting:
                job.waiting.appendleft(slot.bounds)

    def _end(self, job: JobBatches) -> None:
        if job.ended:
            return
        job.ended = True
        job.waiting.clear()
        if job in self.jobs:
            self.jobs.remove(job)
        pending = [slot for actor in self.actors for slot in actor.slots if slot.job is job]
        for slot in pending:
            ray.cancel(slot.ref)  # those waiting in an actor's queue never start
        for actor in self._live() if pending else ():
            actor.handle.cancel.remote(job.id)  # the one in progress stops at its next stage

    def _live(self) -> list[Actor]:
        return [actor for actor in self.actors if actor.state != "dead"]

    def _check_some_left(self) -> None:
        if not self._live():
            raise self._none_left()

    def _none_left(self) -> DeviceError:
        why = "; ".join(f"{actor.name}: {actor.error}" for actor in self.actors)
        return DeviceError(
            f"every Ray actor is lost ({why}); check the cluster (`ray status`) and start `invsr serve --ray` again"
        )


def _job_failure(error: RayTaskError, actor: Actor) -> InvSRError:
    """What a batch's failure on an actor means for its job: the library's own error as it is, anything
    else an Internal error naming the actor."""
    cause = error.cause
    if isinstance(cause, InvSRError):
        return cause
    return Internal(f"a batch failed on Ray actor {actor.name} ({type(cause).__name__}: {_first_line(cause)})")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
