"""The GIMP plug-in's own code: flow.py (talking to the worker, checking results) and gimp_adapter.py
(everything that touches GIMP). The client of the worker is the package invsr_wire beside it."""
