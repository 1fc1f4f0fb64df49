"""Everything that crosses the wire between the InvSR worker and its clients, and nothing else.

- contract.py    what every side agrees on: pixel types, parameter names and ranges, output-size rounding
- request.py     UpscaleRequest: one upscale's parameters, validated where it is made (the library's too)
- replies.py     the worker's replies as typed values: Hello, Progress, Result
- errors.py      every deliberate error, by code: the same classes on both sides of the wire
- protocol.py    signed messages (docs/PROTOCOL.md describes them)
- connection.py  the connection file that tells clients where the worker is, and its secret
- client.py      the client: finds or starts the local worker, sends jobs, heartbeats
- keys.py        CurveZMQ key pairs for a worker reachable beyond this machine (`invsr keys`)
- atomic.py      files written whole or not at all
- vendored.py    the pyzmq the GIMP installer may vendor: used only by a Python it fits, and without one of its own

Standard library and pyzmq only: the GIMP plug-in carries this package into GIMP's own Python, where
neither PyTorch nor NumPy can be assumed. A test imports it with both made unimportable.
"""
