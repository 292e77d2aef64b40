"""Set-up every LocalCluster worker runs as it starts (a dask preload, see compute.py)."""

from __future__ import annotations

import os
from typing import Any


def dask_setup(worker: Any) -> None:
    """Size the worker's BLAS and OpenMP pools to its thread variables.

    Workers are forked from a server process whose libraries sized their pools when it
    started, with the settings of this process's first cluster; a later cluster may ask for
    another ``compute.threads_per_worker``, which its workers find in ``OMP_NUM_THREADS``.
    """
    from threadpoolctl import threadpool_limits

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        threadpool_limits(limits=int(threads))  # kept for the life of the process
