"""Set-up each LocalCluster worker runs as it starts (a preload of :mod:`geoensemble.compute`)."""

from __future__ import annotations

import os
from typing import Any


def dask_setup(worker: Any) -> None:
    """Leave Ctrl-C to the stage, and size the worker's BLAS and OpenMP pools to its thread
    variables.

    Ctrl-C sends SIGINT to the whole process group, worker processes included: each would
    print its own KeyboardInterrupt traceback while the stage, which owns them, says in one
    line that it was interrupted and closes its cluster. ``OMP_NUM_THREADS`` holds the
    cluster's ``threads_per_worker`` (set by :func:`geoensemble.compute.dask_client`).
    """
    import signal

    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        threadpool_limits(limits=int(threads))  # kept for the life of the process
