"""InvSR on a Ray cluster: one image's tiles, and a folder's images, spread over several GPUs and machines.

cluster.py   joining or starting Ray, and how many actors of which kind it holds
reaper.py    a local Ray's processes ended with the process that started it, even killed
head.py      a joined cluster's head watched: lost when its address stops answering, back when it answers
actor.py     one actor per GPU (or CPU): a warm pipeline that computes batches of tiles
dispatch.py  the front's batches over the actors: fair between jobs, faults and slow actors handled
pipeline.py  `RayPipeline`: the pipeline's interface (upscale, describe) with its tiles on the actors

Ray is an optional extra: `import invsr_server.cluster` is cheap and works without it; `require_ray` says how to
install it.
"""

from invsr.wire.errors import UsageError

PACKAGE = "invsr-gimp"  # setup.cfg's name: what pip installs the extra of
INSTALL_HINT = f"pip install '{PACKAGE}[ray]'"


def require_ray():
    """The `ray` module, or a UsageError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray
