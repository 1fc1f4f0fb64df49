"""The `invsr` command: upscale files and folders, run the worker, install the GIMP plug-in, manage weights.

- commands.py   the argument parser and one function per command
- remote.py     the worker seen through the pipeline's interface (`invsr upscale --server`)

It stands on top of the others: the library (invsr, with its wire invsr.wire), the worker (invsr_server.worker),
the Ray backend (invsr_server.cluster) and, for `invsr gimp`, the plug-in's installer (invsr_gimp.install).
"""
