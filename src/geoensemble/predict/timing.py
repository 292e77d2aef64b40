"""Seconds by phase of the predict stage, so a slow run says where its time went.

The phases are logged as one line (``predict: seconds by phase: {json}``, read by
``benchmarks/harness.py``) and recorded as ``seconds_<phase>`` metrics of the predict run.
Block phases (``read``, ``predict``) are timed where each block ran (a thread or a dask
worker) and summed, so with several they can add up to more than the wall time; the others
are wall time of the stage's main thread: ``startup`` (process start to the stage:
interpreter, imports, config), ``tracking`` (MLflow store, predict run, its logging and
closing), ``models`` (loading them), ``open`` (opening the scenes, the legend), ``write``
(blocks into the scratch files), ``cog`` (compression and overviews into the COG),
``blocks`` (the scene's wall time: reading, predicting, writing and ``cog``, overlapped),
``quicklook``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

#: The line prefix the benchmarks look for.
LOG_PREFIX = "seconds by phase: "


class Phases:
    """Seconds spent per named phase; :meth:`add` is safe from several threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to phase ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def metrics(self) -> dict[str, float]:
        """The phases as MLflow metrics ``seconds_<phase>``."""
        return {f"seconds_{k}": round(v, 4) for k, v in self.seconds.items()}

    def line(self) -> str:
        """One log line: :data:`LOG_PREFIX` and the phases as JSON."""
        return LOG_PREFIX + json.dumps({k: round(v, 3) for k, v in self.seconds.items()})
