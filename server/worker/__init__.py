"""The InvSR worker (`invsr serve`): one long-lived process that keeps the model warm and serves upscale
jobs to clients over ZeroMQ.

- worker.py  the I/O thread: the socket clients talk to, checks, answers, the queue, heartbeats
- jobs.py    the job board both threads share, the model loaded on first use, the executor thread

It speaks the protocol of invsr.wire and uses the library only through its public names (`invsr`).
"""
