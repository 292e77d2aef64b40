"""Helpers of the integration tests: project copies, a tiny feature store, loopback servers.

Every server or worker a test starts listens on 127.0.0.1 only, on a free port, is waited for
with a bounded timeout and is always stopped (its whole process group) at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TINY, run, tool, tool_env


def copy_project(dst: Path) -> Path:
    """The project's tracked (and untracked, not ignored) files, as a fresh clone would have."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if (
            src.is_file()
            and not f.startswith(("data/", "reports/", "outputs/"))
            and f != "dvc.lock"
        ):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


@contextlib.contextmanager
def tiny_git_project(d: Path) -> Iterator[Path]:
    """The project copied to ``d`` as a git repo whose ``conf/config.yaml`` holds the tiny
    scene (appended after the groups, so it wins even when ``dvc exp run`` recomposes conf/
    with only its ``-S`` overrides), committed after ``dvc repro``; DVC's queue is stopped
    at the end."""
    from omegaconf import OmegaConf

    copy_project(d)
    tiny = OmegaConf.to_yaml(OmegaConf.from_dotlist([*TINY, "ensemble.size=2"]))
    with (d / "conf/config.yaml").open("a") as f:
        f.write("\n# tests: a tiny scene\n" + tiny)
    run(["git", "init", "-q", "-b", "main"], d)
    run([tool("python"), "-m", "geoensemble.app.params"], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "project"], d)
    run([tool("dvc"), "repro"], d, timeout=900)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "baseline"], d)
    try:
        yield d
    finally:
        run([tool("dvc"), "queue", "stop"], d, check=False, timeout=120)


def tiny_overrides(d: Path) -> list[str]:
    """Hydra overrides for the tiny scene with every path (and the SQLite store) under ``d``."""
    paths = ["raw", "stack", "features", "reports"]
    if "labels:" in (ROOT / "conf" / "config.yaml").read_text():
        paths.append("labels")  # paths.labels exists once labels are rasterized (issue 5)
    return [
        *TINY,
        *(f"paths.{p}={d}/{p}" for p in paths),
        f"data.path={d}/raw/scene",
        f"data.truth={d}/raw/labels/truth.tif",
        f"data.labels.path={d}/raw/labels/points.geojson",
        f"predict.output_dir={d}/maps",
        f"tracking.uri=sqlite:///{d}/mlflow.db",
    ]


def compose_tiny(d: Path, *overrides: str) -> Any:
    """A validated config for the tiny scene under ``d``, with more ``overrides``."""
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    return validate(compose([*tiny_overrides(d), *overrides], config_dir=ROOT / "conf"))


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny scene ingested and featurized (``features/``), built once."""
    from geoensemble.app import stages

    d = tmp_path_factory.mktemp("tiny")
    cfg = compose_tiny(d)
    for stage in ("scene", "ingest", "featurize"):
        stages.STAGES[stage](cfg)
    return d


def reset_mlflow_uris() -> None:
    """Forget process-wide MLflow URIs (and their env vars) that an earlier stage set."""
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(var, None)


@pytest.fixture(autouse=True)
def _fresh_mlflow_uris() -> Iterator[None]:
    """Stages run in this process set MLflow's global tracking and registry URIs: without
    this, a test would read another test's store (e.g. a registry on a stopped server)."""
    reset_mlflow_uris()
    yield
    reset_mlflow_uris()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start a background process in its own process group, output to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=tool_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Stop a process started by :func:`start` and everything it spawned."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    else:
        # the leader exited; its children may still run in the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until(
    ok: Callable[[], bool], *, timeout: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``ok`` until true; fail with the log if ``proc`` died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(Exception):
            if ok():
                return
        time.sleep(0.5)
    pytest.fail(f"{proc.args} not ready after {timeout} s:\n{log.read_text()[-4000:]}")


@dataclass
class Server:
    """A running ``mlflow server`` on loopback."""

    url: str
    store: Path
    log: Path

    def api(self, endpoint: str, body: dict[str, Any] | None = None, **query: str) -> Any:
        """Call the REST API (``GET`` with query parameters, ``POST`` with a JSON body)."""
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict[str, Any]]:
        """Every run of an experiment matching ``filter_string`` (REST ``runs/search``)."""
        runs: list[dict[str, Any]] = []
        token = None
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [experiment_id],
                "filter": filter_string,
                "max_results": 1000,
            }
            if token:
                body["page_token"] = token
            page = self.api("runs/search", body)
            runs.extend(page.get("runs", []))
            token = page.get("next_page_token")
            if not token:
                return runs


def run_metrics(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def run_tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def run_params(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


@contextlib.contextmanager
def serve(backend: str, d: Path, *, serve_artifacts: bool = False) -> Iterator[Server]:
    """``mlflow server`` over ``backend`` on a free loopback port, artifacts under ``d``
    (served by the server itself with ``serve_artifacts``), stopped on exit."""
    port, log = free_port(), d / "server.log"
    proc = start(
        [
            *(tool("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "2", "--backend-store-uri", backend),
            *("--artifacts-destination", str(d / "mlartifacts")),
            *(["--serve-artifacts"] if serve_artifacts else []),
        ],
        d,
        log,
        # no background job consumers (GenAI scorers): they cost cores and start-up time
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    server = Server(url=f"http://127.0.0.1:{port}", store=d, log=log)

    def healthy() -> bool:
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as r:
            return bool(r.status == 200)

    try:
        wait_until(healthy, timeout=180, proc=proc, log=log)
        yield server
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow server`` on 127.0.0.1 (free port) over a SQLite store in a tmp dir."""
    d = tmp_path_factory.mktemp("mlflow-server")
    with serve(f"sqlite:///{d}/mlflow.db", d) as server:
        yield server


@pytest.fixture(scope="session")
def server_ensemble(mlflow_server: Server, tiny_store: Path) -> dict[str, Any]:
    """A small ensemble trained against the server (experiment ``server-test``)."""
    from geoensemble.app import stages

    cfg = compose_tiny(
        tiny_store,
        f"tracking.uri={mlflow_server.url}",
        "tracking.experiment=server-test",
        "tracking.model_name=server_model",
        f"paths.reports={mlflow_server.store}/reports",
    )
    return dict(stages.train(cfg))
