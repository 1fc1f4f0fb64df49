"""The InvSR worker and what serves it: `invsr serve` and the rest of the `invsr` command.

- worker/   the worker: one long-lived process that keeps the model warm and serves jobs over ZeroMQ
- cluster/  the worker's tiles and a folder's images spread over several GPUs and machines with Ray
- cli/      the `invsr` command: upscale files and folders, run the worker, install the GIMP plug-in

It stands on the library (`invsr`, with its wire package `invsr.wire`) and, for `invsr gimp`, on the
plug-in's installer (`invsr_gimp`); neither imports anything from here.
"""
