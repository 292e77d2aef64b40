"""An existing dask cluster: a real ``dask scheduler`` and two ``dask worker`` processes on
loopback, started by the test; the ensemble fit and the prediction run there (compute.address)
with the same results as on the default local cluster.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from geoensemble.app import stages
from geoensemble.compute import connect, dask_client, slow_malloc_workers
from geoensemble.errors import ConfigError
from tests.conftest import ROOT, tool
from tests.integration.conftest import compose_tiny, free_port, start, stop, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``tcp://127.0.0.1:<port>`` of a scheduler with two single-threaded worker processes."""
    d = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        log = d / "scheduler.log"
        procs.append(
            start(
                [
                    *(tool("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)),
                    "--no-dashboard",
                ],
                d,
                log,
            )
        )
        for i in range(2):
            procs.append(
                start(
                    [
                        *(tool("dask"), "worker", address, "--host", "127.0.0.1"),
                        *("--nworkers", "1", "--nthreads", "1", "--name", f"w{i}"),
                        *("--no-dashboard", "--memory-limit", "2GiB"),
                        *("--local-directory", str(d / f"w{i}")),
                    ],
                    d,
                    d / f"worker{i}.log",
                    OMP_NUM_THREADS="1",
                    # w1 as the README says to start workers; w0 with dask's defaults
                    **({"DASK_CONFIG": str(ROOT / "examples" / "dask")} if i else {}),
                )
            )

        def two_workers() -> bool:
            with Client(address, timeout="5s") as c:
                return len(c.scheduler_info()["workers"]) == 2

        wait_until(two_workers, timeout=120, proc=procs[0], log=log)
        yield address
    finally:
        for p in reversed(procs):
            stop(p)


def test_fit_and_predict_on_the_cluster_match_the_local_run(
    scheduler: str, tiny_store: Path, tmp_path: Path
) -> None:
    def cfg(where: str, *extra: str):  # type: ignore[no-untyped-def]
        return compose_tiny(
            tiny_store,
            "ensemble.size=3",
            f"tracking.experiment=dask-{where}",
            f"tracking.model_name=dask_{where}",
            f"paths.reports={tmp_path}/{where}/reports",
            "predict.model_uri=train_report",  # the version this train registered
            f"predict.output_dir={tmp_path}/{where}/maps",
            "predict.scheduler=distributed",
            *extra,
        )

    remote = cfg("cluster", f"compute.address={scheduler}")
    local = cfg("local")
    with Client(scheduler) as client:
        seen = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.task_prefixes))
        assert "fit" not in seen
        reports = {name: stages.train(c) for name, c in (("cluster", remote), ("local", local))}
        fit = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.task_prefixes))
        maps = {name: stages.predict(c) for name, c in (("cluster", remote), ("local", local))}
        done = client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.task_prefixes))
        # tasks each worker ran in its life: both took part
        counts = client.run(lambda dask_worker: dask_worker.state.executed_count)

    assert "fit" in fit - seen  # the members were fitted on the cluster
    assert done - fit, "no prediction task ran on the cluster"
    assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts

    # same members, same scores, same champion
    def scores(report: dict) -> dict[str, tuple]:  # type: ignore[type-arg]
        return {
            m["member"]: (json.dumps(m["params"], sort_keys=True), m["aic"])
            for m in report["members"]
        }

    a, b = scores(reports["cluster"]), scores(reports["local"])
    assert a.keys() == b.keys() and len(a) == 3
    for k in a:
        assert a[k][0] == b[k][0]
        assert a[k][1] == pytest.approx(b[k][1], rel=1e-9)
    assert reports["cluster"]["champion"]["member"] == reports["local"]["champion"]["member"]

    # same maps, pixel for pixel
    tifs = {w: sorted((tmp_path / w / "maps").rglob("*.tif")) for w in ("cluster", "local")}
    assert len(tifs["cluster"]) == len(tifs["local"]) >= 1
    for ta, tb in zip(tifs["cluster"], tifs["local"], strict=True):
        with rasterio.open(ta) as ra, rasterio.open(tb) as rb:
            xa, xb = ra.read(1), rb.read(1)
        assert np.array_equal(xa, xb)
        assert (xa != ra.nodata).sum() > 1000
    assert maps["cluster"] and maps["local"]


def test_workers_started_with_the_nannys_malloc_setting_are_named(
    scheduler: str, caplog: pytest.LogCaptureFixture
) -> None:
    from geoensemble.compute import Cluster

    with Client(scheduler) as client:
        names = client.run(lambda dask_worker: dask_worker.name)
        trim = client.run(lambda: __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"))
        slow = slow_malloc_workers(client)
    assert sorted(trim.values(), key=str) == ["65536", None]
    # only the worker started without examples/dask/distributed.yaml
    assert [names[a] for a in slow] == ["w0"]
    with caplog.at_level("WARNING", logger="geoensemble"):
        with dask_client(Cluster(address=scheduler)):
            pass
    (line,) = [r.getMessage() for r in caplog.records if "MALLOC_TRIM" in r.getMessage()]
    assert line.startswith(f"1 of the dask workers at address={scheduler} run with")
    assert "DASK_CONFIG=examples/dask" in line


@pytest.mark.parametrize(
    ("address", "match"),
    [
        ("127.0.0.1", r"^address='127\.0\.0\.1' is not a scheduler URL"),
        ("tcp://127.0.0.1:{closed}", r"cannot reach the dask scheduler.*dask scheduler"),
    ],
)
def test_bad_address_names_the_key(address: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        connect(address.format(closed=free_port()), timeout=2)


def test_scheduler_without_workers_is_reported(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "scheduler.log"
    proc = start(
        [tool("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        tmp_path,
        log,
    )
    try:
        wait_until(lambda: f"127.0.0.1:{port}" in log.read_text(), timeout=60, proc=proc, log=log)
        with pytest.raises(ConfigError, match=r"has no worker after 2 s.*dask worker"):
            connect(f"tcp://127.0.0.1:{port}", timeout=2)
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (None, r"not a dask scheduler \(it gave no dask answer within timeout=2 s\)"),
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            r"not a dask scheduler \(it gave an answer that is not a dask message",
        ),
    ],
    ids=["silent-port", "http-server"],
)
def test_an_address_that_does_not_speak_dask_is_refused_within_the_timeout(
    answer: bytes | None, match: str
) -> None:
    """A port that accepts TCP but is no scheduler: one line within compute.timeout, not a
    hang of 600 s nor a MemoryError reading an HTTP reply as a frame length."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                held.append(conn)
                if answer:
                    conn.sendall(answer)

    threading.Thread(target=accept, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            connect(address, timeout=2)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(120)  # a hang guard, not a speed test
    server.close()
    for c in held:
        c.close()
    assert not caller.is_alive(), "connect() did not return"
    (exc,) = outcome
    assert isinstance(exc, ConfigError) and re.search(match, str(exc)), exc
