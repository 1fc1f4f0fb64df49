"""The `invsr` command: upscale files and folders, run the worker, install the GIMP plug-in, manage weights.

- commands.py   the argument parser and one function per command
- remote.py     the worker seen through the pipeline's interface (`invsr upscale --server`)
- gimp_setup.py `invsr gimp install | uninstall | doctor`

It stands on top of the others: the library (invsr), the wire (invsr_wire) and the worker (invsr_worker).
"""
