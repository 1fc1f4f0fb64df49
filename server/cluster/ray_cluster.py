"""Joining Ray, or starting it on this machine, and which actors it can hold.

`--ray local` starts Ray in this process with every GPU and CPU of the machine (its processes end with
this one, even killed: reaper.py); `--ray ADDRESS` joins a cluster started with `ray start --head` (and
`ray start --address=...` on the other machines). Actors:
one per GPU by default, each with one GPU; on a cluster without GPUs, one actor by default, the CPUs
shared out between the actors asked for (each actor's PyTorch then uses as many threads as it has CPUs).
"""

from __future__ import annotations

import dataclasses
import logging
import os

from invsr.wire.errors import UsageError

from . import reaper, require_ray


@dataclasses.dataclass(frozen=True)
class ActorShape:
    """How many actors, and what each one holds."""

    count: int
    gpus: int  # per actor: 1, or 0 for CPU actors
    cpus: int  # per actor
    threads: int | None  # PyTorch's CPU threads per actor; None: its default (GPU actors)


def connect(address: str) -> bool:
    """Start Ray here (`local`) or join the cluster at `address`: True; False when this process had already
    joined one (which is then used: `address` is not looked at)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, logging_level=logging.WARNING, configure_logging=False)
    try:
        if address == "local":
            ray.init(address="local", **options)  # a new instance, never one found running
            reaper.watch()  # its processes end with this one, even killed
        else:
            ray.init(address=address, **options)
    except ConnectionError as error:
        raise UsageError(f"cannot join the Ray cluster at {address}: {error}{_auth_hint()}") from None
    return True


def _auth_hint() -> str:
    """What to set when this process has no Ray token: the likely cause when joining a cluster fails."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(os.path.expanduser("~/.ray/auth_token"))
    if os.environ.get("RAY_AUTH_MODE") == "token" and token:
        return ""
    return (
        ". The likely cause, if the address is right: the cluster requires Ray's token authentication and this"
        " process has none; set RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN to the head's token (or copy its"
        " ~/.ray/auth_token here), as for `ray start` (docs/RAY.md)"
    )


def actor_shape(count: int | None) -> ActorShape:
    """The actors for `count` (None: one per GPU, or one on a cluster without GPUs) on the joined cluster."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if count is not None and count < 1:
        raise UsageError(f"--actors must be at least 1, got {count}")
    if gpus:
        count = count or gpus
        if count > gpus:
            raise UsageError(f"--actors {count}: the cluster has {gpus} GPUs, and each actor takes one")
        return ActorShape(count, 1, 1 if cpus >= count else 0, None)
    count = count or 1
    if count > cpus:
        raise UsageError(f"--actors {count}: the cluster has no GPU and {cpus} CPUs, and each actor needs one")
    share = cpus // count
    return ActorShape(count, 0, share, share)
