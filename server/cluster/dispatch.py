"""The front's batches over the actors: fairly between jobs, and through lost, hung, slow and failing actors.

One thread, the dispatcher, sends batches and collects their results; the jobs' own threads submit an
image's batches, take the results it collects and end their jobs. All shared state is under one lock.

- Each actor holds at most DEPTH batches: one computing, the next waiting in its queue, so that it never
  idles for a round trip. A free place goes to the next job in turn that has batches waiting (round
  robin), so a small job's batches go between a large one's rather than after all of them. A job whose
  thread has a round of results still to take (DEPTH per actor, at least AHEAD: its client slow to take
  its bands) gets no new batch meanwhile: results wait unsent rather than pile up in the front's memory.
- A batch's pixels (tiles/work.py: its tiles' crops, their noise and colour references) travel through
  Ray's object store; the image stays on the front, which also accumulates the outputs.
- Every actor is pinged each PING_EVERY seconds (answered beside its batches, actor.py); one whose ping
  has waited QUIET_S seconds gets no new batch meanwhile. One that has not answered for `ping_limit`
  seconds (a frozen process or node) is "slow": no new work, and its batches are also given to the
  others. So is one whose batch runs far longer than its peers' (`slow_factor` times the median of recent
  batches, and at least `slow_floor` seconds: a hung GPU). A slow actor is "ready" again once it answers
  a ping and holds no batch.
- A batch that fails with an ordinary error (one that is not the request's own: out of memory, a driver
  error) is run again on another actor; it fails its job only after failing on MAX_TRIES actors, or on
  every one. An actor whose FAIL_LIMIT batches in a row failed is "failing": out of rotation for
  `fail_pause` seconds (doubled each time, up to FAIL_PAUSE_MAX), then tried again.
- An actor that dies (its process killed, its node lost) has its batches put back at the head of their
  jobs' queues, for the others. Jobs fail, with a DeviceError, only when no actor is left.
- A lost actor is replaced: a new one is asked of Ray at once, which starts it where a GPU (or the CPUs)
  is free, now or when one frees up or a node comes back; it joins the rotation once its model is loaded.
- The first result of a batch counts; any later one (from an actor that was given up on) is dropped.
- Planning asks every ready actor at once and takes the first answer, so no job waits on one actor.
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
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from invsr.wire.errors import Cancelled, DeviceError, Internal, InvSRError, OutOfMemory

log = logging.getLogger("invsr.ray")
DEPTH = 2  # batches an actor holds: one computing, one waiting
AHEAD = 4  # results of a job waiting for its thread beyond which it is sent no new batch, at least
SLOW_FACTOR = 3.0  # a batch this many times slower than the median of recent ones is also run elsewhere
SLOW_FLOOR = 10.0  # ... but never before this many seconds
RECENT = 64  # batch durations the median is taken over
PING_EVERY = 1.0  # seconds between an actor's pings
PING_LIMIT = 10.0  # an actor that has not answered a ping for this long is slow
QUIET_S = 2.0  # an actor whose ping has waited this long gets no new batch until it answers
FAIL_LIMIT = 2  # failed batches in a row that take an actor out of rotation
FAIL_PAUSE = 30.0  # ... for this long the first time, then twice as long each time
FAIL_PAUSE_MAX = 600.0
MAX_TRIES = 3  # actors a batch may fail on before its job fails
RESPAWN_AFTER = 30.0  # a replacement that failed to start is asked for again after this many seconds
WAIT_S = 0.05  # the dispatcher's poll: how soon it notices a result, a new job or an end
STALL_FLOOR_S = 5.0  # jobs without a result for this long (and twice the median batch) have stalled


class Actor:
    """One actor as the dispatcher sees it."""

    def __init__(self, name: str, handle, info: dict):
        self.name, self.handle, self.info = name, handle, info
        self.state = "ready"  # ready; slow (frozen or hung: no new work until it answers); failing; dead
        self.error = ""  # why it is slow, failing or dead
        self.since = 0.0  # when it became slow or failing
        self.slots: deque[Slot] = deque()  # its batches in the order it runs them
        self.batches = 0  # batches it has completed
        self.failures = 0  # batches in a row that failed on it
        self.pause = 0.0  # how long it was last taken out of rotation for
        self.ping = None  # the ping not answered yet
        self.pinged = 0.0  # when it was sent
        self.answered = time.monotonic()  # when the actor last answered one

    def describe(self) -> dict:
        info = self.info
        shown = {key: info.get(key) for key in ("device", "dtype", "host", "pid", "gpus")}
        state = {"name": self.name, "state": self.state, **shown, "batches": self.batches, "in_flight": len(self.slots)}
        return {**state, "error": self.error} if self.error else state


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
        self.failed_on: dict[int, set[str]] = {}  # a batch's first tile: the actors it failed on
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
    def __init__(
        self,
        actors: list[Actor],
        slow_factor: float = SLOW_FACTOR,
        slow_floor: float = SLOW_FLOOR,
        ping_limit: float = PING_LIMIT,
        fail_pause: float = FAIL_PAUSE,
        spawn=None,
    ):
        self.actors = actors
        self.spawn = spawn  # () -> a new actor's handle, to replace a lost one; None: not replaced
        self.coming: dict = {}  # a replacement's describe() ref: its handle
        self.owed: list[float] = []  # when to ask again for the replacements that failed to start
        self.slow_factor, self.slow_floor = slow_factor, slow_floor
        self.ping_limit, self.fail_pause = ping_limit, fail_pause
        self.jobs: list[JobBatches] = []
        self.turn = 0  # the next job to offer a place to
        self.durations: deque[float] = deque(maxlen=RECENT)
        self.progressed = time.monotonic()  # when a job was last submitted or a batch's result arrived
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
            self.progressed = time.monotonic()
        return job

    def end(self, job: JobBatches) -> None:
        """The job is done, cancelled or failed: none of its batches is wanted any more."""
        with self.lock:
            self._end(job)

    def plan_facts(self, request, timeout: float = 60.0) -> tuple:
        """(geometry, tile settings) from the first actor to answer (actor.TileActor.plan_facts), of those
        ready (of all that are alive when none is)."""
        with self.lock:
            self._check_some_left()
            asked = [actor for actor in self.actors if actor.state == "ready"] or self._live()
        pending = {actor.handle.plan_facts.remote(request): actor for actor in asked}
        deadline = time.monotonic() + timeout
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            actor = pending.pop(ready[0])
            try:
                return ray.get(ready[0])
            except RayActorError:
                continue  # the dispatcher notices a dead one itself
            except RayTaskError as error:
                raise _job_failure(error, actor) from None
        with self.lock:
            self._check_some_left()
        raise DeviceError(f"no Ray actor answered within {timeout:g} s; see `invsr serve`'s status for their health")

    def stalled(self) -> bool:
        """Whether no batch has come back for far longer than batches take (say, their inputs were on a lost
        node), since the last job began. Read without the lock: asked when a head is lost, it must not wait
        on a dispatcher caught in a call to Ray."""
        recent = list(self.durations)
        usual = 2 * statistics.median(recent) if recent else 0.0
        return time.monotonic() - self.progressed > max(STALL_FLOOR_S, usual)

    def fail_all(self, failure: InvSRError) -> None:
        """End every job with `failure` (its thread raises it at its next poll)."""
        with self.lock:
            for job in list(self.jobs):
                job.results.put(failure)
                self._end(job)

    def describe(self) -> list[dict]:
        with self.lock:
            return [actor.describe() for actor in self.actors]

    def close(self) -> list:
        """Stop dispatching: the handles of every actor, and of those starting, for the caller to end."""
        self.stopping = True
        self.thread.join(timeout=10)
        return [actor.handle for actor in self.actors] + list(self.coming.values())

    # --- the dispatcher thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping:
            with self.lock:
                self._check_health()
                self._assign()
                slots = {slot.ref: slot for actor in self.actors for slot in actor.slots}
                pings = {actor.ping: actor for actor in self.actors if actor.ping is not None}
                coming = dict(self.coming)
            if not slots and not pings and not coming:
                time.sleep(WAIT_S)
                continue
            waited = [*slots, *pings, *coming]
            ready, _ = ray.wait(waited, num_returns=len(waited), timeout=WAIT_S)
            with self.lock:
                for ref in ready:
                    if ref in slots:
                        self._collect(slots[ref])
                    elif ref in coming:
                        self._arrived(ref)
                    else:
                        self._answered(pings[ref], ref)
                self._give_up_slow()

    def _assign(self) -> None:
        now = time.monotonic()
        for actor in self.actors:
            if actor.state != "ready" or (actor.ping is not None and now - actor.pinged > QUIET_S):
                continue  # out of rotation, or quiet for a moment: perhaps frozen
            while len(actor.slots) < DEPTH and (found := self._next_batch(actor)):
                job, bounds = found
                inputs = job.work.inputs(*bounds, job.batch)
                ref = actor.handle.compute.remote(job.id, job.work.recipe, inputs)
                actor.slots.append(Slot(job, bounds, actor, ref, None if actor.slots else time.monotonic()))

    def _next_batch(self, actor: Actor) -> tuple[JobBatches, tuple[int, int]] | None:
        """The next job in turn with a batch waiting that has not failed on `actor`, and that batch (taken
        off the job's queue)."""
        count = len(self.jobs)
        for k in range(count):
            job = self.jobs[(self.turn + k) % count]
            if job.results.qsize() >= max(AHEAD, DEPTH * len(self.actors)):  # its thread held up: wait
                continue
            for bounds in job.waiting:
                if actor.name not in job.failed_on.get(bounds[0], ()):
                    job.waiting.remove(bounds)
                    self.turn = (self.turn + k + 1) % count
                    return job, bounds
        return None

    def _check_health(self) -> None:
        """Ping the actors; set aside those silent too long; return to rotation those that recovered."""
        now = time.monotonic()
        for due in [due for due in self.owed if due <= now]:
            self.owed.remove(due)
            self._replace()
        for actor in self.actors:
            if actor.state == "dead":
                continue
            if actor.ping is None and now - actor.pinged >= PING_EVERY:
                actor.ping, actor.pinged = actor.handle.ping.remote(), now
            if actor.ping is not None and now - actor.pinged > self.ping_limit and actor.state == "ready":
                self._set_aside(actor, "slow", f"has not answered for {now - actor.pinged:.0f} s")
            elif actor.state == "slow" and not actor.slots and actor.answered > actor.since:
                self._return(actor, "answers again")
            elif actor.state == "failing" and not actor.slots and now >= actor.since + actor.pause:
                self._return(actor, f"is tried again after {actor.pause:.0f} s out of rotation")

    def _answered(self, actor: Actor, ref) -> None:
        if actor.state == "dead":
            return
        actor.ping = None
        try:
            ray.get(ref)
        except RayActorError as error:
            self._lose(actor, error)
            return
        except RayTaskError:
            return
        actor.answered = time.monotonic()

    def _replace(self) -> None:
        """Ask Ray for an actor in place of a lost one."""
        if self.spawn is not None and not self.stopping:
            handle = self.spawn()
            self.coming[handle.describe.remote()] = handle

    def _arrived(self, ref) -> None:
        """A replacement has loaded its model (it joins the rotation), or failed to start (another is asked)."""
        handle = self.coming.pop(ref)
        try:
            info = ray.get(ref)
        except (RayActorError, RayTaskError) as error:
            log.warning("a replacement Ray actor failed to start (%s); another is asked for soon", _first_line(error))
            self.owed.append(time.monotonic() + RESPAWN_AFTER)
            return
        actor = Actor(f"actor-{len(self.actors)}", handle, info)
        self.actors.append(actor)
        log.warning("Ray actor %s has started on %s in place of a lost one", actor.name, info.get("host"))

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
                self._failed(actor, slot, error)
            return
        actor.batches += 1
        actor.failures = 0
        self.progressed = now
        self.durations.append(now - slot.started if slot.started is not None else 0.0)
        start = slot.bounds[0]
        if job.ended or start in job.counted:  # ended, or computed elsewhere first: never counted twice
            return
        job.counted.add(start)
        if slot.bounds in job.waiting:  # put back for another actor, and not sent yet
            job.waiting.remove(slot.bounds)
        job.by_actor[actor.name] = job.by_actor.get(actor.name, 0) + 1
        job.results.put((start, outputs))

    def _failed(self, actor: Actor, slot: Slot, error: RayTaskError) -> None:
        """`slot`'s batch failed on `actor`: the request's own error fails its job; any other is tried on
        another actor, and takes the actor out of rotation for a while once it keeps failing."""
        job, start, cause = slot.job, slot.bounds[0], error.cause
        if start in job.counted:
            return
        if isinstance(cause, InvSRError) and not isinstance(cause, (DeviceError, OutOfMemory)):
            job.results.put(_job_failure(error, actor))  # the same on any actor
            self._end(job)
            return
        why = _first_line(cause)
        log.warning("a batch failed on Ray actor %s (%s: %s)", actor.name, type(cause).__name__, why)
        tried = job.failed_on.setdefault(start, set())
        tried.add(actor.name)
        actor.failures += 1
        if actor.failures >= FAIL_LIMIT and actor.state == "ready":
            actor.pause = min(FAIL_PAUSE_MAX, 2 * actor.pause if actor.pause else self.fail_pause)
            self._set_aside(actor, "failing", f"{actor.failures} batches in a row failed ({why})")
        if len(tried) >= MAX_TRIES or all(other.name in tried for other in self._live()):
            job.results.put(_job_failure(error, actor))
            self._end(job)
        else:
            self._put_back([slot])

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
            self._set_aside(actor, "slow", f"a batch has run {now - head.started:.0f} s, over {limit:.1f} s")

    def _set_aside(self, actor: Actor, state: str, why: str) -> None:
        """No new work for `actor`; its batches go to the others too (the first result counts), and those
        it has not started are cancelled there."""
        actor.state, actor.error, actor.since = state, why, time.monotonic()
        log.warning("Ray actor %s is %s: %s; its batches go to the others", actor.name, state, why)
        self._put_back(actor.slots)
        for slot in list(actor.slots)[1:]:
            ray.cancel(slot.ref)

    def _return(self, actor: Actor, why: str) -> None:
        log.warning("Ray actor %s %s: back in rotation", actor.name, why)
        actor.state, actor.error = "ready", ""

    def _lose(self, actor: Actor, error: Exception, slot: Slot | None = None) -> None:
        """The actor is gone, with the batches it held (and `slot`, already taken off it)."""
        if actor.state == "dead":
            return
        actor.state = "dead"
        actor.error = _first_line(error)
        actor.ping = None
        log.warning("Ray actor %s is lost (%s); its batches go to the others", actor.name, actor.error)
        self._put_back([*([slot] if slot else []), *actor.slots])
        actor.slots.clear()
        self._replace()
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
