"""MLflow faults: a tracking server that dies or hangs, a stage interrupted or killed, and a
SQLite store that is full, damaged, locked, read-only, half-made or from another MLflow.

Each stops within ``tracking.timeout`` (plus start-up), with one line naming the server or the
file and the fix (exit 2), and leaves no MLflow run RUNNING. Real ``mlflow server`` and HTTP
servers on 127.0.0.1, real signals, real SQLite files and real tmpfs mounts; nothing mocked.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geoensemble import tracking
from geoensemble.app.cli import one_line
from geoensemble.app.config import TrackingConfig
from geoensemble.app.keys import keyed
from geoensemble.app.tracker import tracker_for
from geoensemble.errors import TrackingError
from tests.conftest import ROOT, tool, tool_env
from tests.integration.conftest import (
    free_port,
    reset_mlflow_uris,
    start,
    stop,
    tiny_overrides,
    wait_until,
)

FAULTY = "tests.hardening.estimators.FaultyKMeans"


def stage_cmd(stage: str, featurized: Path, tmp: Path, *overrides: str) -> list[str]:
    """A stage as the user runs it, reading ``featurized``, writing only under ``tmp``."""
    return [
        sys.executable,
        f"pipelines/{stage}.py",
        *tiny_overrides(featurized),
        f"paths.reports={tmp}/reports",
        f"predict.output_dir={tmp}/maps",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        f"hydra.run.dir={tmp}/hydra",
        "trust.modules=[tests]",  # the faulty test estimators some tests name
        *overrides,
    ]


def stage_env(tmp: Path) -> dict[str, str]:
    """The environment of a stage subprocess: ``tests`` importable (its faulty estimator)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return tool_env(GEOENSEMBLE_ROOT=str(tmp), PYTHONPATH=path)


def run_stage(cmd: list[str], tmp: Path, timeout: float = 180) -> tuple[int, str, float]:
    """Run a stage to its end; return its exit code, stderr and seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=stage_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stderr, time.monotonic() - t0


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ": error: " in ln]


def assert_one_line(stderr: str, *needles: str) -> str:
    """The stage's single error line, holding every needle; no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def runs_of(db: Path) -> list[tuple[str, str, dict[str, str]]]:
    """``(run id, status, tags)`` of every run in a SQLite store, read with sqlite3 only."""
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as con:
        runs = con.execute("SELECT run_uuid, status FROM runs").fetchall()
        tags: dict[str, dict[str, str]] = {}
        for run, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run, {})[key] = value
    return [(r, s, tags.get(r, {})) for r, s in runs]


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)
        ) as con:
            return int(con.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet, or busy: poll again


def poll(ok: Callable[[], bool], proc: subprocess.Popen[Any], timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ok():
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- a server dies
def interrupt(
    cmd: list[str], tmp: Path, sig: signal.Signals, ready: Callable[[], bool], what: str
) -> str:
    """Run a stage, send it ``sig`` once ``ready()`` holds (SIGINT to its whole process
    group, as Ctrl-C in a terminal does), and return its stderr after checking it exited
    with the signal's code; skip when it ended before it could be interrupted ``what``."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        # a stage that hangs is sent SIGABRT: faulthandler prints where each thread waits
        env={**stage_env(tmp), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen = poll(ready, proc)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            # faulthandler's thread stacks, without its long list of extension modules
            stacks = err[err.rfind("Fatal Python error") :].split("\nExtension modules")[0]
            pytest.fail(
                f"{what}: the stage did not exit within 120 s of {sig.name}:\n{stacks[-6000:]}"
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    if proc.returncode == 0 or not seen:
        pytest.skip(f"{what} ended before it could be interrupted")
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-3000:]
    assert "exit still waited" not in err, err[-3000:]  # a thread the exit could not join
    return err


def test_server_killed_mid_train_stops_the_stage_within_the_timeout(
    featurized: Path, tmp_path: Path
) -> None:
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = store / "server.log"
    server = start(
        [
            tool("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination",
            str(store / "mlartifacts"),
        ],
        store,
        log,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    url = f"http://127.0.0.1:{port}"
    markers = tmp_path / "markers"
    markers.mkdir()
    train = None
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                return bool(r.status == 200)

        wait_until(healthy, timeout=180, proc=server, log=log)
        train = subprocess.Popen(
            stage_cmd(
                "train",
                featurized,
                tmp_path,
                f"tracking.uri={url}",
                "tracking.timeout=5",
                f"model.estimator._target_={FAULTY}",
                "trust.modules=[tests]",
                "trust.params=[marker_dir]",
                f"+model.estimator.marker_dir={markers}",
                "+model.estimator.delay=2.0",
                "ensemble.previews=false",
            ),
            cwd=ROOT,
            env=stage_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Kill the server once a member is fitting (the parent run is created meanwhile).
        assert poll(lambda: any(markers.iterdir()), train), train.communicate()[1][-3000:]
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
        t_kill = time.monotonic()
        _, err = train.communicate(timeout=300)
        stopped = time.monotonic() - t_kill
    finally:
        if train is not None and train.poll() is None:
            train.kill()
            train.wait(30)
        stop(server)
    print(f"server SIGKILLed: train stopped {stopped:.1f} s later (tracking.timeout=5)")
    assert train.returncode == 2, err[-3000:]
    assert_one_line(err, f"the MLflow tracking server {url}", "tracking.timeout=5", "tracking.uri")
    assert stopped < 60  # a hang guard (MLflow's own retries took 495 s)
    assert not (tmp_path / "reports" / "train.json").exists()


class _HangingHandler(http.server.BaseHTTPRequestHandler):
    """``/health`` answers OK; every API call hangs (until the test ends, at most 120 s)."""

    release: threading.Event

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            body = b"OK"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.release.wait(120)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hanging_server() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (_HangingHandler,), {"release": release})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("stage", ["train", "predict"])
def test_server_whose_api_hangs_stops_the_stage_within_the_timeout(
    featurized: Path, tmp_path: Path, hanging_server: str, stage: str
) -> None:
    code, err, seconds = run_stage(
        stage_cmd(
            stage, featurized, tmp_path, f"tracking.uri={hanging_server}", "tracking.timeout=5"
        ),
        tmp_path,
    )
    print(f"{stage}: API hangs, /health answers: stopped after {seconds:.1f} s (timeout=5)")
    assert code == 2, err[-3000:]
    line = assert_one_line(
        err, f"the MLflow tracking server {hanging_server}", "within 5 s", "tracking.timeout"
    )
    assert "/api/2.0/mlflow/" in line  # which call got no answer
    assert seconds < 60  # stage start-up + 5 s (it took 1,214 s)
    assert not (tmp_path / "reports" / "train.json").exists()


def test_timeout_bounds_mlflow_http_calls_in_process(
    tmp_path: Path, hanging_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own HTTP settings come from tracking.timeout for the life of a stage (one
    try, no backoff), and the caller's own settings come back after it."""
    from geoensemble.app.tracker import bounded_mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")  # a user's: overridden
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    tracker = tracker_for(TrackingConfig(uri=hanging_server, timeout=2))
    with bounded_mlflow(2):
        t0 = time.monotonic()
        with pytest.raises(
            TrackingError, match=r"gave no answer to /api/2\.0/mlflow/\S+ within 2 s"
        ):
            tracker.open()
        assert time.monotonic() - t0 < 20
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        # The server is known dead: a later call fails at once instead of waiting again.
        t0 = time.monotonic()
        with pytest.raises(TrackingError, match="gave no answer"):
            tracker.log_metrics("0" * 32, {"x": 1.0})
        assert time.monotonic() - t0 < 1
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


# --------------------------------------------------------------------------- signals
def train_cmd(featurized: Path, tmp: Path, markers: Path, delay: float) -> list[str]:
    return stage_cmd(
        "train",
        featurized,
        tmp,
        f"model.estimator._target_={FAULTY}",
        "trust.modules=[tests]",
        "trust.params=[marker_dir]",
        f"+model.estimator.marker_dir={markers}",
        f"+model.estimator.delay={delay}",
        "ensemble.keep=3",
        "ensemble.previews=false",
    )


CHILDREN = "SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId'"
VERSIONS = "SELECT count(*) FROM model_versions"


@pytest.mark.parametrize(
    ("sig", "when"),
    [
        (signal.SIGINT, "fitting"),  # Ctrl-C: the whole foreground process group
        # the interrupt lands while the kept members register: every store write is on the
        # logger's background thread, so it lands in the main thread's wait, never inside a
        # SQLite write that would keep the store locked while the runs are closed (it did,
        # about 1 run in 24 under load, while the writes were on the main thread)
        (signal.SIGINT, "registering"),
        (signal.SIGTERM, "fitting"),
    ],
)
def test_interrupted_train_closes_every_run_it_started(
    featurized: Path, tmp_path: Path, sig: signal.Signals, when: str
) -> None:
    db = tmp_path / "mlflow.db"
    markers = tmp_path / "markers"
    markers.mkdir()
    sql = CHILDREN if when == "fitting" else VERSIONS
    err = interrupt(
        train_cmd(featurized, tmp_path, markers, delay=1.0 if when == "fitting" else 0.0),
        tmp_path,
        sig,
        lambda: count(db, sql) >= 1,
        f"train while {when}",
    )
    assert "Traceback" not in err, err[-3000:]
    assert f"interrupted by {'SIGTERM' if sig == signal.SIGTERM else 'SIGINT'}" in err
    runs = runs_of(db)
    assert len(runs) >= 2  # the parent and at least one member
    assert {s for _, s, _ in runs} <= {"KILLED", "FAILED", "FINISHED"}, (runs, err[-2000:])
    [parent] = [r for r in runs if r[2].get("geoensemble.role") == "ensemble"]
    assert parent[1] == "KILLED"
    assert parent[2]["failure_reason"].startswith("interrupted by")
    assert not (tmp_path / "reports" / "train.json").exists()


def test_train_killed_while_registering_leaves_no_run_running_after_the_next_stage(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlflow.db"
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen(
        train_cmd(featurized, tmp_path, markers, delay=0.0),
        cwd=ROOT,
        env=stage_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # a kept member's run is reopened to log its model: kill right then
        reopened = "SELECT count(*) FROM runs r JOIN model_versions v ON v.run_id = r.run_uuid"
        seen = poll(lambda: count(db, VERSIONS) >= 1 or count(db, reopened) >= 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    if not seen:
        pytest.skip("train ended before it could be killed while registering")
    before = runs_of(db)
    left = [r for r, s, _ in before if s == "RUNNING"]
    assert left, "the kill left nothing RUNNING: nothing to test"
    # Every run it started carries its owner (host and pid), members included.
    assert all(tracking.OWNER_PID in tags for _, _, tags in before)

    # The next stage to open the store closes them.
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    try:
        tracker_for(TrackingConfig(uri=f"sqlite:///{db}")).open()
    finally:
        reset_mlflow_uris()
    after = {r: (s, tags) for r, s, tags in runs_of(db)}
    assert [r for r, (s, _) in after.items() if s == "RUNNING"] == []
    for r in left:
        assert after[r][0] == "KILLED"
        assert "ended without closing the run" in after[r][1]["failure_reason"]


# --------------------------------------------------------------------------- SQLite stores
@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete MLflow SQLite store with the geoensemble experiment, made once."""
    d = tmp_path_factory.mktemp("good-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOENSEMBLE_ROOT", str(d))
        try:
            tracker_for(TrackingConfig(uri=f"sqlite:///{d}/mlflow.db")).open()
        finally:
            reset_mlflow_uris()
    return d / "mlflow.db"


def store_copy(good: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    shutil.copy2(good, db)
    return db


def sql(db: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(db)) as con:
        for s in statements:
            con.execute(s)
        con.commit()


def random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def truncated(db: Path) -> None:
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.truncate(size // 2)


def newer_schema(db: Path) -> None:
    sql(db, "UPDATE alembic_version SET version_num = 'ffffffffffff'")


def older_schema(db: Path) -> None:
    sql(db, "UPDATE alembic_version SET version_num = '451aebb31d03'")  # MLflow 1.x's first


def geopackage(db: Path) -> None:
    """A GeoPackage given as the store by mistake: SQLite, with GeoPackage's application id."""
    db.unlink()
    sql(db, "PRAGMA application_id = 1196444487", "CREATE TABLE gpkg_contents (x TEXT)")


BROKEN_STORES = {
    "random bytes": (random_bytes, ["is damaged", "not an SQLite database", "mv ", ".broken"]),
    "truncated": (truncated, ["is damaged", "truncated", "mv ", ".broken"]),
    "newer schema": (
        newer_schema,
        ["has schema ffffffffffff", "if a newer MLflow", "pip install -U mlflow"],
    ),
    "older schema": (older_schema, ["has schema 451aebb31d03", "mlflow db upgrade sqlite:///"]),
    "a GeoPackage": (geopackage, ["is a GeoPackage, not an MLflow store", "tracking.uri"]),
}


@pytest.mark.parametrize("case", list(BROKEN_STORES))
def test_a_broken_store_is_one_line_naming_the_file_and_the_fix(
    good_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    damage, needles = BROKEN_STORES[case]
    db = store_copy(good_store, tmp_path / "store")
    damage(db)
    before = db.read_bytes()
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    t0 = time.monotonic()
    try:
        with pytest.raises(TrackingError) as e:
            tracker_for(TrackingConfig(uri=f"sqlite:///{db}", timeout=5)).open()
    finally:
        reset_mlflow_uris()
    assert time.monotonic() - t0 < 30
    msg = one_line(str(keyed(e.value)))  # as a stage says it (tracking.uri)
    assert str(db) in msg
    for n in needles:
        assert n in msg, msg
    assert db.read_bytes() == before  # diagnosed, not touched
    assert sorted(p.name for p in db.parent.iterdir()) == ["mlflow.db"]


def test_a_corrupt_store_from_the_command_line_is_one_line_and_exit_2(
    featurized: Path, tmp_path: Path, good_store: Path
) -> None:
    db = store_copy(good_store, tmp_path)
    random_bytes(db)
    code, err, _ = run_stage(stage_cmd("predict", featurized, tmp_path), tmp_path)
    assert code == 2
    assert_one_line(err, f"the MLflow store {db} is damaged", f"mv {db} {db}.broken")
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def test_a_locked_store_waits_tracking_timeout_then_says_so(
    good_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = store_copy(good_store, tmp_path / "store")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for as long as it likes
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    t0 = time.monotonic()
    try:
        with pytest.raises(TrackingError) as e:
            tracker_for(TrackingConfig(uri=f"sqlite:///{db}", timeout=2)).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        reset_mlflow_uris()
    waited = time.monotonic() - t0
    print(f"locked store: gave up after {waited:.1f} s (tracking.timeout=2)")
    assert 2 <= waited < 30
    msg = one_line(str(e.value))
    assert f"the MLflow store {db} is locked by another process" in msg
    assert "waited timeout=2 s" in msg  # the Tracker's argument; a stage names the key:
    assert "tracking.timeout=2" in one_line(str(keyed(e.value)))


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (skips when mounting is not permitted)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30, check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], timeout=30, check=True)


def test_disk_full_while_creating_the_store_leaves_no_half_made_store(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small", "256k") as small:
        db = small / "mlflow.db"
        cmd = stage_cmd("predict", featurized, tmp_path, f"tracking.uri=sqlite:///{db}")
        code, err, _ = run_stage(cmd, tmp_path)
        assert code == 2, err[-3000:]
        assert_one_line(
            err, f"could not create the MLflow store {db}: no space left", "tracking.uri"
        )
        assert list(small.iterdir()) == []  # no mlflow.db, no temporary file

        # With room, the next stage creates the store whole.
        remount(small, "size=20m")
        monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
        try:
            tracker = tracker_for(TrackingConfig(uri=f"sqlite:///{db}"))
            exp = tracker.open()
            assert tracker.client.get_experiment(exp).name == "geoensemble"
        finally:
            reset_mlflow_uris()
        assert sorted(p.name for p in small.iterdir()) == ["mlflow.db"]


def test_a_store_half_made_by_mlflow_on_a_full_disk_is_diagnosed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "small", "300k") as small:
        db = small / "mlflow.db"
        # MLflow itself, on a full disk: what earlier geoensemble versions left behind.
        code = "import mlflow, sys; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
        subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{db}"],
            capture_output=True,
            env=tool_env(),
            timeout=120,
            check=False,
        )
        assert db.exists()
        remount(small, "size=20m")
        monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
        try:
            with pytest.raises(TrackingError) as e:
                tracker_for(TrackingConfig(uri=f"sqlite:///{db}")).open()
        finally:
            reset_mlflow_uris()
        msg = one_line(str(e.value))
        assert f"the MLflow store {db} was left half-created" in msg
        assert f"rm {db}" in msg


@pytest.mark.parametrize("what", ["file", "folder", "disk"])
def test_a_read_only_store_is_one_line(
    good_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    folder = tmp_path / "store"
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    with contextlib.ExitStack() as undo:
        if what == "disk":
            undo.enter_context(tmpfs(folder, "20m"))
            db = store_copy(good_store, folder)
            remount(folder, "ro")
        else:
            db = store_copy(good_store, folder)
            target = db if what == "file" else folder
            if os.geteuid() == 0:  # root ignores modes: make it immutable instead
                chattr = shutil.which("chattr")
                if chattr is None or subprocess.run([chattr, "+i", str(target)]).returncode:
                    pytest.skip("running as root without chattr +i: cannot make it read-only")
                undo.callback(lambda: subprocess.run([chattr, "-i", str(target)], check=False))
            else:
                target.chmod(0o555 if what == "folder" else 0o444)
                undo.callback(target.chmod, 0o755 if what == "folder" else 0o644)
        try:
            with pytest.raises(TrackingError) as e:
                tracker_for(TrackingConfig(uri=f"sqlite:///{db}", timeout=5)).open()
        finally:
            reset_mlflow_uris()
    msg = one_line(str(e.value))
    assert f"the MLflow store {db} cannot be written" in msg
    assert "writable" in msg and "set uri to" in msg
    assert "set tracking.uri to" in str(keyed(e.value))  # as a stage says it


def test_a_new_store_in_a_read_only_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "ro", "1m") as folder:
        remount(folder, "ro")
        db = folder / "mlflow.db"
        monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
        t0 = time.monotonic()
        try:
            with pytest.raises(TrackingError, match=rf"the MLflow store {db} cannot be written"):
                tracker_for(TrackingConfig(uri=f"sqlite:///{db}")).open()
        finally:
            reset_mlflow_uris()
        assert time.monotonic() - t0 < 10  # MLflow alone retried for ~100 s


def test_a_killed_creation_leaves_nothing_the_next_stage_does_not_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "mlflow.db"
    stale = folder / f".mlflow.db{tracking.CREATING}999999"  # a creation killed midway
    stale.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    other = folder / "notes.db"  # not ours: kept
    other.write_bytes(b"x")
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    try:
        tracker_for(TrackingConfig(uri=f"sqlite:///{db}")).open()
    finally:
        reset_mlflow_uris()
    assert sorted(p.name for p in folder.iterdir()) == ["mlflow.db", "notes.db"]


# --------------------------------------------------------------------------- predict's run
PREDICT_RUNS = "SELECT count(*) FROM tags WHERE key = 'geoensemble.role' AND value = 'predict'"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_predict_interrupted_while_writing_ends_its_background_run_and_no_map(
    featurized: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """The predict run is started and ended on a background thread while the maps are
    written (the store exists, so it is opened there too): an interruption still ends it
    KILLED, with no finished map and no traceback."""
    from tests.hardening.test_faults import partials, save_slow_model, slow_predict

    db = tmp_path / "mlflow.db"
    tracker_for(TrackingConfig(uri=f"sqlite:///{db}")).open()  # an existing local store
    names = save_slow_model(tmp_path / "slow.pkl", featurized / "features", delay=0.25)
    maps = tmp_path / "maps"
    cmd = stage_cmd("predict", featurized, tmp_path, *slow_predict(tmp_path, names))
    err = interrupt(
        cmd,
        tmp_path,
        sig,
        lambda: count(db, PREDICT_RUNS) >= 1 and bool(partials(maps)),
        "predict while writing",
    )
    assert "Traceback" not in err, err[-3000:]
    [run] = [r for r in runs_of(db) if r[2].get("geoensemble.role") == "predict"]
    assert run[1] == "KILLED", (run, err[-2000:])
    assert run[2]["failure_reason"].startswith("interrupted by")
    assert [p.name for p in maps.iterdir() if not p.name.startswith(".")] == []
