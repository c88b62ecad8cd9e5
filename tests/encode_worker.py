"""A child process that encodes and decodes on request, for the encoder property tests.

An encoder that aborts (a kernel writing out of bounds, say) kills this process, not the
test run: the parent sees the pipe close and fails the test with the input it sent.
Warnings are errors here, as in the test suite.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import warnings
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

#: A request with this codec id makes the worker abort (tests the harness itself).
ABORT = "__abort__"


def serve(conn: Connection) -> None:
    faulthandler.enable()
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import fedcodec

    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        config, x, seed = request
        if config["id"] == ABORT:
            os.abort()
        codec = fedcodec.get_codec(config)
        try:
            payload = codec.encode(x, seed=seed)
        except Exception as exc:  # reported to the parent, which judges it
            conn.send(("encode", type(exc).__name__, str(exc), None, None))
            continue
        try:
            y = fedcodec.decode(payload, seed=seed)
        except Exception as exc:
            conn.send(("decode", type(exc).__name__, str(exc), payload, None))
            continue
        conn.send(("ok", "", "", payload, y))


class Worker:
    """Owns one child running :func:`serve`; restarts it after a crash."""

    def __init__(self) -> None:
        self.proc: Any = None
        self.conn: Connection | None = None

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def run(self, config: dict[str, Any], x: np.ndarray, seed: int) -> tuple[Any, ...]:
        """The child's answer, or ("died", exit code, ...) if the child died on it."""
        if self.proc is None or not self.proc.is_alive():
            self.start()
        assert self.conn is not None
        try:
            self.conn.send((config, x, seed))
            if not self.conn.poll(120):
                raise TimeoutError
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.proc.kill()
            self.proc.join()
            code = self.proc.exitcode
            self.proc = None
            return ("died", type(exc).__name__, f"exit code {code}", None, None)

    def close(self) -> None:
        if self.proc is not None:
            assert self.conn is not None
            self.conn.close()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc = None
