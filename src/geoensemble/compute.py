"""The dask client: a LocalCluster by default, or an existing scheduler from config.

This is the only module that creates clients. Workers run single-threaded BLAS/OpenMP by
default so that dask threads x BLAS threads never exceed the cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from geoensemble.config import ComputeConfig
from geoensemble.errors import ConfigError

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_VARS = (*_THREAD_VARS, "DASK_LOGGING__DISTRIBUTED")


@contextlib.contextmanager
def dask_client(ccfg: ComputeConfig) -> Iterator[object]:
    """Yield a ``distributed.Client``; a LocalCluster it started is closed on exit."""
    from distributed import Client, LocalCluster

    if ccfg.address:
        try:
            client = Client(ccfg.address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"cannot reach the dask scheduler at compute.address="
                f"{ccfg.address!r} ({exc}): start it, or set compute.address=null "
                f"for a local cluster"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    env = {v: str(ccfg.threads_per_worker) for v in _THREAD_VARS}
    env["DASK_LOGGING__DISTRIBUTED"] = "error"  # worker processes read it at start
    old = {v: os.environ.get(v) for v in _ENV_VARS}
    os.environ.update(env)  # inherited by worker processes
    try:
        with (
            LocalCluster(
                n_workers=ccfg.n_workers,
                threads_per_worker=ccfg.threads_per_worker,
                processes=ccfg.processes,
                memory_limit=ccfg.memory_limit,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
