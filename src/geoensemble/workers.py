"""Set-up every LocalCluster worker runs as it starts (a dask preload, see compute.py)."""

from __future__ import annotations

import gc
import os
from typing import Any


def dask_setup(worker: Any) -> None:
    """Size the worker's BLAS and OpenMP pools to its thread variables, and turn the
    garbage collector back on.

    Workers are forked from a server process whose libraries sized their pools when it
    started, with the settings of this process's first cluster; a later cluster may ask for
    another ``compute.threads_per_worker``, which its workers find in ``OMP_NUM_THREADS``.
    """
    from threadpoolctl import threadpool_limits

    if not gc.isenabled():
        # Forked from the fork server, which imported with the collector off
        # (geoensemble.forkserver): what it loaded is never walked again, the rest is.
        gc.freeze()
        gc.enable()

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        threadpool_limits(limits=int(threads))  # kept for the life of the process
