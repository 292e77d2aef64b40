"""The dask client: a LocalCluster by default, or an existing scheduler from config.

This is the only module that creates clients. Workers run single-threaded BLAS/OpenMP by
default so that dask threads x BLAS threads never exceed the cores.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from geoensemble.errors import ComputeError, ConfigError

log = logging.getLogger("geoensemble")


@dataclass(frozen=True)
class Cluster:
    """Where members and blocks run: what :func:`dask_client` reads (the application's
    ``compute`` config takes its defaults from here).

    ``address``: ``tcp://host:8786`` of a running scheduler, or ``None`` for a LocalCluster
    of ``n_workers`` workers (``threads_per_worker`` threads each, worker processes unless
    ``processes`` is false, ``memory_limit`` per worker); ``timeout``: seconds to wait for
    workers; ``retries``: times a task is rerun after its worker died.
    """

    address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    processes: bool = True
    memory_limit: str = "auto"
    timeout: float = 30.0
    retries: int = 2  # = geoensemble.ensemble.defaults.RETRIES (tests/io/test_spec.py)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_ENV_VARS = (*_THREAD_VARS, "DASK_LOGGING__DISTRIBUTED")
# Workers here run a few long CPU-bound tasks (ensemble members, blocks of a map). The
# statistical profiler (a stack sample every 10 ms) and the event-loop ticks (every 20 ms) each
# need the GIL the task holds; with every core busy each handoff waits for a time slice, and
# member fits ran ~1.17x slower than in-process (benchmarks/ensemble_benchmark.py).
_QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


class _MemoryRestarts(logging.Handler):
    """Counts the workers a LocalCluster's nannies restarted for going over their memory
    limit (they run in this process and say so on ``distributed.nanny.memory``)."""

    logger = logging.getLogger("distributed.nanny.memory")

    def __init__(self, memory_limit: str) -> None:
        super().__init__(logging.WARNING)
        self.memory_limit = memory_limit
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "memory budget" in record.getMessage():
            self.count += 1

    @contextlib.contextmanager
    def watching(self) -> Iterator[_MemoryRestarts]:
        old = self.logger.level, self.logger.propagate
        # Heard here and reported as one line by out_of_memory(), not printed as it happens.
        self.logger.setLevel(logging.WARNING)
        self.logger.propagate = False
        self.logger.addHandler(self)
        try:
            yield self
        finally:
            self.logger.removeHandler(self)
            self.logger.setLevel(old[0])
            self.logger.propagate = old[1]


def out_of_memory(client: Any, *, wait: float = 2.0) -> ComputeError | None:
    """The error to raise, naming ``memory_limit``, when workers of ``client``'s
    LocalCluster were restarted for going over their memory limit (else ``None``).

    Call it when a task or the cluster's start fails: a worker killed for its memory makes
    its tasks fail in several ways (lost data, cancelled futures, ``KilledWorker``, workers
    that never join), none of which names the cause.
    """
    import time

    watch = getattr(client, "memory_restarts", None)
    if not isinstance(watch, _MemoryRestarts):
        return None
    # The nanny checks memory every 100 ms: the failure it causes may surface first.
    deadline = time.monotonic() + wait
    while not watch.count and time.monotonic() < deadline:
        time.sleep(0.1)
    if not watch.count:
        return None
    return ComputeError(
        f"dask workers were stopped {watch.count} time(s) for going over their memory limit "
        f"memory_limit={watch.memory_limit} (a worker needs ~200 MB to start, plus the "
        f"training pixels and a member's fit): raise memory_limit (e.g. auto, or 2GB), or "
        f"lower sample",
        arguments={"memory_limit": "Cluster.memory_limit", "sample": "fit_ensemble.sample"},
    )


@contextlib.contextmanager
def dask_client(ccfg: Cluster, *, preload: Sequence[str] = ()) -> Iterator[object]:
    """Yield a ``distributed.Client``; a LocalCluster it started is closed on exit.

    The LocalCluster's workers start in the background, importing the ``preload`` modules
    (what their tasks need, e.g. scikit-learn) while the caller does its own set-up; call
    :func:`wait_for_workers` before sending them data.
    """
    # distributed sets its loggers to INFO on import and LocalCluster(silence_logs=...)
    # restores that level on close, flooding stage output with shutdown chatter; the
    # caller's level comes back when the client is closed.
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with _client(ccfg, preload) as client:
            yield client
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _client(ccfg: Cluster, preload: Sequence[str]) -> Iterator[object]:
    """A client of the cluster at ``address``, else of a new local cluster."""
    import dask
    from distributed import Client

    if ccfg.address:
        with _remote_client(ccfg.address, ccfg.timeout) as remote:
            yield remote
        return
    with (
        _worker_environ(ccfg),
        dask.config.set(_cluster_config(ccfg)),
        _local_cluster(ccfg, preload) as cluster,
        Client(cluster) as client,
        _MemoryRestarts(str(ccfg.memory_limit)).watching() as watch,
    ):
        client.memory_restarts = watch  # read by out_of_memory()
        cluster.scale(ccfg.n_workers)
        yield client


@contextlib.contextmanager
def _remote_client(address: str, timeout: float) -> Iterator[object]:
    """A client of the cluster at ``address``, warning of slowly allocating workers."""
    client = connect(address, timeout=timeout)
    try:
        slow = slow_malloc_workers(client)
        if slow:
            log.warning(
                "%d of the dask workers at address=%s run with %s set (the "
                "nanny's default), which makes each block or member up to 1.9x slower: "
                "start them with DASK_CONFIG=examples/dask (see docs/compute.md)",
                len(slow),
                address,
                SLOW_MALLOC,
                extra={"arguments": {"address": "Cluster.address"}},
            )
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _worker_environ(ccfg: Cluster) -> Iterator[None]:
    """Set the thread counts and log level the local worker processes inherit; restore the
    environment after."""
    env = {v: str(ccfg.threads_per_worker) for v in _THREAD_VARS}
    env["DASK_LOGGING__DISTRIBUTED"] = "error"  # worker processes read it at start
    old = {v: os.environ.get(v) for v in _ENV_VARS}
    os.environ.update(env)  # inherited by worker processes
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cluster_config(ccfg: Cluster) -> dict[str, Any]:
    """The dask settings of a local cluster."""
    import dask

    # The scheduler runs in this process: a task whose worker dies is rescheduled
    # up to ``retries`` times, then fails with KilledWorker.
    # worker-saturation 1.0: a worker holds only the tasks it runs, so when one dies
    # the blame (and the retry count) falls on the member that killed it, not on a
    # member that merely waited in its queue.
    return {
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
        # The training data is scattered to every worker so that a member's
        # worker can die without losing it; the memory manager's ReduceReplicas
        # would drop the copies it deems extra, and a death then forgets the data
        # and every member task waiting on it (seen as "already forgotten").
        "distributed.scheduler.active-memory-manager.start": False,
        **_QUIET_WORKERS,
    }


def _local_cluster(ccfg: Cluster, preload: Sequence[str]) -> Any:
    """A LocalCluster on this machine, with no workers yet."""
    from distributed import LocalCluster

    return LocalCluster(
        # Workers are added by the caller, without waiting: they start while the stage does
        # its own set-up (MLflow); wait_for_workers() is called before they are needed.
        n_workers=0,
        threads_per_worker=ccfg.threads_per_worker,
        processes=ccfg.processes,
        memory_limit=ccfg.memory_limit,
        # loopback only, and a free port: runs side by side never clash on 8787
        # (threads-only clusters talk in-process and take no host)
        host="127.0.0.1" if ccfg.processes else None,
        dashboard_address="127.0.0.1:0",
        # Thread workers live in this process: their pools are this process's.
        preload=["geoensemble.workers", *preload] if ccfg.processes else list(preload),
        silence_logs=40,
    )


def wait_for_workers(client: Any, timeout: float) -> None:
    """Block until the workers of ``client``'s cluster have joined.

    A LocalCluster from :func:`dask_client` starts its workers in the background; an
    existing scheduler was already checked for a first worker by :func:`connect`.

    Raises
    ------
    ComputeError
        If the workers have not started within ``timeout`` seconds.
    """
    cluster = getattr(client, "cluster", None)
    n = len(getattr(cluster, "worker_spec", {})) or 1
    try:
        client.wait_for_workers(n, timeout=timeout)
    except TimeoutError:
        oom = out_of_memory(client)
        if oom is not None:
            raise oom from None
        raise ComputeError(
            f"only {len(client.scheduler_info()['workers'])} of {n} dask workers started "
            f"within timeout={timeout:g} s (errors printed above, if any, say why): the "
            f"machine may be short of memory or busy; raise timeout or lower n_workers",
            arguments={"timeout": "Cluster.timeout", "n_workers": "Cluster.n_workers"},
        ) from None


#: Set in every worker by dask's nannies (65536). Any value turns glibc's dynamic mmap
#: threshold off: each array over 128 kB is mapped and unmapped anew and page-faults every
#: time. A predict block took 1.9x as long (examples/dask/distributed.yaml removes it).
SLOW_MALLOC = "MALLOC_TRIM_THRESHOLD_"


def _malloc_setting() -> str | None:
    # On the worker (by reference: os.environ.get itself would be pickled with this
    # process's whole environment).
    return os.environ.get(SLOW_MALLOC)


def slow_malloc_workers(client: Any) -> list[str]:
    """The addresses of ``client``'s workers that run with :data:`SLOW_MALLOC` set (none
    when they cannot say: the check is advice, it never stops a stage)."""
    try:
        found = client.run(_malloc_setting)
    except Exception:
        return []
    return sorted(w for w, v in found.items() if v is not None)


async def _identity(address: str, timeout: float) -> Any:
    import asyncio

    from distributed.comm import connect as open_comm

    comm = await open_comm(address, timeout=timeout)
    try:
        await comm.write({"op": "identity"})
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()


def _check_scheduler(address: str, timeout: float) -> None:
    """Ask ``address`` who it is, within ``timeout`` s: a server that accepts the connection
    but does not speak dask (an HTTP proxy, a silent port) would keep the client waiting or
    send bytes read as a frame length of exabytes."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    # On its own thread and event loop: a notebook's running loop is left alone.
    pool = ThreadPoolExecutor(1, thread_name_prefix="geoensemble-probe")
    # The connection and the answer each get ``timeout``; the bound over both is a backstop.
    job = pool.submit(asyncio.run, asyncio.wait_for(_identity(address, timeout), 2 * timeout + 1))
    try:
        reply: Any = job.result(2 * timeout + 5)
    except (TimeoutError, FutureTimeout):  # TimeoutError is an OSError: first
        reply = f"no dask answer within timeout={timeout:g} s"
    except OSError as exc:
        raise _unreachable(address, exc) from None
    except Exception as exc:  # an unreadable answer (MemoryError on a bogus frame length)
        reply = f"an answer that is not a dask message ({type(exc).__name__})"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if isinstance(reply, dict) and reply.get("type") == "Scheduler":
        return
    if isinstance(reply, dict):
        reply = f"the answer of a dask {reply.get('type')!r}, not of a scheduler"
    raise ConfigError(
        f"address={address!r} is not a dask scheduler (it gave {reply}): check the host and "
        f"port of `dask scheduler` (default 8786), or leave address unset for a local cluster",
        arguments={"address": "Cluster.address", "timeout": "Cluster.timeout"},
    )


def _unreachable(address: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"cannot reach the dask scheduler at address={address!r} ({type(exc).__name__}: "
        f"{exc}): start it (dask scheduler), or leave address unset for a local cluster",
        arguments={"address": "Cluster.address"},
    )


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
            f"address={address!r} is not a scheduler URL: use tcp://host:port (e.g. "
            f"tcp://127.0.0.1:8786), or leave address unset for a local cluster",
            arguments={"address": "Cluster.address"},
        )
    _check_scheduler(address, timeout)
    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise _unreachable(address, exc) from None
    try:
        # Without a worker the ensemble's tasks would wait forever.
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise ConfigError(
            f"the dask scheduler at address={address!r} has no worker after {timeout:g} s: "
            f"start one (dask worker {address}), or raise timeout",
            arguments={"address": "Cluster.address", "timeout": "Cluster.timeout"},
        ) from None
    return client


@contextlib.contextmanager
def joined_pool(workers: int, name: str) -> Iterator[Any]:
    """A thread pool of ``workers`` threads for dask's threaded computations in the block
    (pass it as ``pool=``, or set it with ``dask.config.set(pool=...)``), shut down and
    joined when the block ends, also on an error or an interruption.

    Dask's own pools live until the interpreter's ``atexit`` handlers, which run only after
    it has joined every thread: a Ctrl-C or SIGTERM that lands while such a pool starts a
    thread leaves that thread unknown to the pool, idle forever, and the process never
    exits (seen: an interrupted predict stage). A pool of our own that is shut down before
    the exit wakes every thread it started. Its threads also never outlive the block, so a
    failed chunk write cannot recreate a temporary store after it was removed.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix=name)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
