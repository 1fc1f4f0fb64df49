"""The InvSR worker and its client (installed as the package `invsr_server`).

- protocol.py    the wire protocol: signed messages, error codes (docs/PROTOCOL.md describes it)
- connection.py  the connection file that tells clients where the worker is and its secret
- client.py      the client, standard library and pyzmq only (the GIMP plug-in uses it)
- worker.py      the worker process: `invsr serve`
- keys.py        CurveZMQ key pairs for workers reachable beyond this machine: `invsr keys`

Only worker.py imports the invsr library (and PyTorch); the rest runs inside GIMP's Python.
"""
