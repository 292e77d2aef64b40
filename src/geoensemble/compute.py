"""The dask client: a LocalCluster by default, or an existing scheduler from config.

This is the only module that creates clients. Workers run single-threaded BLAS/OpenMP by
default so that dask threads x BLAS threads never exceed the cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from geoensemble.config import ComputeConfig
from geoensemble.errors import ConfigError

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_VARS = (*_THREAD_VARS, "DASK_LOGGING__DISTRIBUTED")


@contextlib.contextmanager
def dask_client(ccfg: ComputeConfig) -> Iterator[object]:
    """Yield a ``distributed.Client``; a LocalCluster it started is closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    # distributed sets its loggers to INFO on import and LocalCluster(silence_logs=...)
    # restores that level on close, flooding stage output with shutdown chatter.
    logging.getLogger("distributed").setLevel(logging.ERROR)

    if ccfg.address:
        client = connect(ccfg.address, timeout=ccfg.timeout)
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
            # The scheduler runs in this process: a task whose worker dies is rescheduled
            # up to compute.retries times, then fails with KilledWorker.
            # worker-saturation 1.0: a worker holds only the tasks it runs, so when one dies
            # the blame (and the retry count) falls on the member that killed it, not on a
            # member that merely waited in its queue.
            dask.config.set(
                {
                    "distributed.scheduler.allowed-failures": ccfg.retries,
                    "distributed.scheduler.worker-saturation": 1.0,
                    # Nannies set MALLOC_TRIM_THRESHOLD_=65536 in workers: glibc then hands
                    # freed memory back at once and every large array of a K-Means fit
                    # page-faults anew, fits run ~1.45x slower than in-process (measured).
                    # Members are short tasks whose memory is freed when they end.
                    "distributed.nanny.pre-spawn-environ": {
                        k: v
                        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                        if k != "MALLOC_TRIM_THRESHOLD_"
                    },
                }
            ),
            LocalCluster(
                n_workers=ccfg.n_workers,
                threads_per_worker=ccfg.threads_per_worker,
                processes=ccfg.processes,
                memory_limit=ccfg.memory_limit,
                # loopback only, and a free port: runs side by side never clash on 8787
                # (threads-only clusters talk in-process and take no host)
                host="127.0.0.1" if ccfg.processes else None,
                dashboard_address="127.0.0.1:0",
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


def connect(address: str, *, timeout: float = 30.0) -> Any:
    """A client of the running scheduler at ``address``, once it has at least one worker.

    Raises
    ------
    ConfigError
        If the scheduler cannot be reached, or no worker joins it, within ``timeout`` s.
    """
    from distributed import Client

    if "://" not in address and ":" not in address:
        raise ConfigError(
            f"compute.address={address!r} is not a scheduler address: use "
            f"tcp://host:port (e.g. tcp://127.0.0.1:8786), or null for a local cluster"
        )
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the dask scheduler at compute.address={address!r} "
            f"({type(exc).__name__}: {exc}): start it (dask scheduler), or set "
            f"compute.address=null for a local cluster"
        ) from None
    try:
        # Without a worker the ensemble's tasks would wait forever.
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise ConfigError(
            f"the dask scheduler at compute.address={address!r} has no worker after "
            f"{timeout:g} s: start one (dask worker {address}), or raise compute.timeout"
        ) from None
    return client
