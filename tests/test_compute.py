"""The LocalCluster of :func:`geoensemble.compute.dask_client`: workers started in the
background with their imports done, quiet workers that leave Ctrl-C to the stage, and a clear
error when they do not start."""

from __future__ import annotations

import os
import sys

import pytest

from geoensemble.compute import Cluster, dask_client, wait_for_workers
from geoensemble.errors import ComputeError


def _worker_facts() -> dict[str, object]:
    import gc
    import signal

    import dask

    return {
        "collector": gc.isenabled(),
        "sigint": signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
        "parent": os.getppid(),
        "preloaded": "geoensemble.ensemble.member" in sys.modules,
        "profiler": dask.config.get("distributed.worker.profile.enabled"),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }


def test_workers_start_in_the_background_with_their_imports() -> None:
    cfg = Cluster(n_workers=2, threads_per_worker=1, processes=True)
    with dask_client(cfg, preload=["geoensemble.ensemble.member"]) as client:
        # The client is usable at once; the workers join while the caller does other work.
        wait_for_workers(client, timeout=60)
        facts = list(client.run(_worker_facts).values())  # type: ignore[attr-defined]
    assert len(facts) == 2
    for f in facts:
        assert f["parent"] == os.getpid()  # this process's nannies started them
        assert f["preloaded"] is True
        assert f["collector"] is True  # the interpreter as it comes
        # Ctrl-C reaches the whole process group: the stage says it in one line and closes
        # the cluster, the workers print no traceback of their own.
        assert f["sigint"] is True
        # The statistical profiler would take the GIL from the members' fits every 10 ms.
        assert f["profiler"] is False
        assert f["threads"] == "1"


def test_workers_that_do_not_start_in_time_name_the_argument() -> None:
    cfg = Cluster(n_workers=2, processes=True)
    # A worker that cannot import its preload never joins (its traceback is printed).
    with dask_client(cfg, preload=["geoensemble.no_such_module"]) as client:
        with pytest.raises(
            ComputeError, match=r"only 0 of 2 dask workers started within timeout=2 s"
        ):
            wait_for_workers(client, timeout=2)


def _pool_sizes() -> set[int]:
    import threadpoolctl

    return {d["num_threads"] for d in threadpoolctl.threadpool_info()}


def test_a_later_cluster_gets_the_threads_it_asks_for() -> None:
    # The fork server keeps the thread pools of the first cluster of the process; each
    # worker resizes them to its own compute.threads_per_worker as it starts.
    for threads in (1, 2):
        cfg = Cluster(n_workers=1, threads_per_worker=threads, processes=True)
        with dask_client(cfg) as client:
            wait_for_workers(client, timeout=60)
            sizes = list(client.run(_pool_sizes).values())  # type: ignore[attr-defined]
        assert sizes == [{threads}]


def test_scattered_training_data_keeps_a_copy_on_every_worker() -> None:
    import time

    import numpy as np

    cfg = Cluster(n_workers=2, processes=True)
    with dask_client(cfg) as client:
        wait_for_workers(client, timeout=60)
        data = client.scatter(np.arange(1000.0), broadcast=True)  # type: ignore[attr-defined]
        # distributed's memory manager would drop the "extra" copy within its 2 s cycle; then
        # a worker dying mid-fit takes the only copy, and every member waiting on it, along.
        time.sleep(4)
        holders = client.who_has(data)[data.key]  # type: ignore[attr-defined]
    assert len(holders) == 2
