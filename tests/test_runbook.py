"""The predict run's bookkeeping in a helper process (real SQLite stores, a real child
process): it records what the stage asks, ends the run as the stage ended, runs nothing
but its own operations, and leaves the stage without MLflow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoensemble.errors import TrackingError
from geoensemble.tracking import OWNER_PID, Tracker, session
from geoensemble.tracking.runbook import RunBookProcess, serve
from tests.conftest import ROOT, tool_env
from tests.integration.conftest import reset_mlflow_uris

SPEC = {
    "run_name": "predict-scene-m_champion",
    "params": {"block_size": 1024, "scenes": "scene"},
    "tags": {"model_kind": "cluster", "scene": "scene"},
    "model_ids": [],
    "legend": {"codes": [0, 1], "names": ["water", "forest"]},
}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tracker]:
    """An existing SQLite store (as the predict stage requires for the helper)."""
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    reset_mlflow_uris()
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", experiment="ex")
    tracker.open()
    assert tracker.can_open_later()
    yield tracker
    session.forget()
    reset_mlflow_uris()


def the_run(tracker: Tracker, run_id: str) -> object:
    from mlflow import MlflowClient

    return MlflowClient(tracker.uri, tracker.uri).get_run(run_id)


def test_the_helper_records_the_run_and_its_artifacts(store: Tracker, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    png = tmp_path / "scene_m_champion.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    book.start(**SPEC)
    run_id = book.run_id()
    book.finish(artifacts=[str(png)], metrics={"valid_pixels": 1234.0, "seconds_read": 0.5})
    book.close()
    assert book.proc.returncode == 0 and book.seconds > 0 and 20 < book.peak_rss_mb < 1000

    run = the_run(store, run_id)
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    assert run.info.experiment_id == store.experiment_id  # type: ignore[attr-defined]
    assert run.info.run_name == SPEC["run_name"]  # type: ignore[attr-defined]
    assert run.data.params == {"block_size": "1024", "scenes": "scene"}  # type: ignore[attr-defined]
    assert run.data.metrics == {"valid_pixels": 1234.0, "seconds_read": 0.5}  # type: ignore[attr-defined]
    tags = run.data.tags  # type: ignore[attr-defined]
    assert tags["model_kind"] == "cluster" and tags["geoensemble.role"] == "predict"
    # the run is owned by the helper, which ended it: not by this process
    assert tags[OWNER_PID] == str(book.proc.pid) != str(os.getpid())
    client = MlflowClient(store.uri, store.uri)
    files = {f.path for f in client.list_artifacts(run_id, "maps")}
    assert files == {"maps/legend.json", "maps/scene_m_champion.png"}
    legend = json.loads(Path(client.download_artifacts(run_id, "maps/legend.json")).read_text())
    assert legend == SPEC["legend"]


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (KeyboardInterrupt(), "KILLED", "interrupted by SIGINT (Ctrl-C)"),
        (ValueError("bad block"), "FAILED", "ValueError: bad block"),
    ],
)
def test_a_failed_stage_ends_the_run_as_it_ended(
    store: Tracker, exc: BaseException, status: str, reason: str
) -> None:
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    book.start(**SPEC)
    run_id = book.run_id()
    book.fail(exc)
    assert book.proc.returncode == 0
    run = the_run(store, run_id)
    assert run.info.status == status  # type: ignore[attr-defined]
    assert run.data.tags["failure_reason"] == reason  # type: ignore[attr-defined]


def test_a_stage_that_dies_leaves_no_run_running(store: Tracker) -> None:
    """A stage killed outright closes nothing: its pipe's end tells the helper."""
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    book.start(**SPEC)
    run_id = book.run_id()
    book.close()  # what the kernel does to the pipe of a killed stage
    run = the_run(store, run_id)
    assert run.info.status == "KILLED"  # type: ignore[attr-defined]
    assert "exited without closing the run" in run.data.tags["failure_reason"]  # type: ignore[attr-defined]


def test_a_store_error_in_the_helper_is_one_line_for_the_stage(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("hello")
    book = RunBookProcess(Tracker(f"sqlite:///{tmp_path}/not-a-db/mlflow.db", experiment="ex"))
    book.start(**SPEC)
    with pytest.raises(TrackingError) as err:
        book.run_id()
    assert "\n" not in str(err.value) and "not-a-db" in str(err.value)
    book.fail(err.value)
    assert book.proc.returncode == 0


def test_the_helper_runs_only_its_own_operations() -> None:
    lines = [
        json.dumps({"op": "__init__"}),
        json.dumps({"op": "tracker"}),
        json.dumps({"op": "start", **SPEC}),  # before open: an error, not a crash
        json.dumps({"op": "fail", "status": "KILLED", "reason": "x"}),
    ]
    out = io.StringIO()
    serve(lines, out)
    replies = [json.loads(x) for x in out.getvalue().splitlines()]
    assert replies[0]["error"] == "unknown bookkeeping operation '__init__'"
    assert replies[1]["error"] == "unknown bookkeeping operation 'tracker'"
    assert replies[2]["error"].startswith("MLflow bookkeeping: AssertionError")
    assert replies[3]["ok"] is None and replies[3]["peak_rss_mb"] > 0  # nothing to end


def test_the_stage_side_never_imports_mlflow(store: Tracker, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from geoensemble.tracking import Tracker
        from geoensemble.tracking.runbook import RunBookProcess

        book = RunBookProcess(Tracker(sys.argv[1], experiment="ex"))
        book.start(run_name="r", params={}, tags={}, model_ids=[], legend=None)
        book.finish(artifacts=[], metrics={"m": 1.0})
        book.close()
        print(book.run_id(), sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, store.uri],
        cwd=tmp_path,
        env=tool_env(PYTHONPATH=str(ROOT / "src"), GEOENSEMBLE_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id, imported = proc.stdout.split(" ", 1)
    assert imported.strip() == "[]"
    assert the_run(store, run_id).info.status == "FINISHED"  # type: ignore[attr-defined]


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (this test's own children)."""
    out = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in env.read_bytes():
                out.append(int(env.parent.name))
        except OSError:
            continue
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_predict_stage_that_stops_early_leaves_no_helper_behind(tmp_path: Path) -> None:
    """The helper is started as the predict stage starts (it imports MLflow meanwhile); a
    config error ends the stage at once, and the unused helper with it."""
    import uuid

    marker = f"GEOENSEMBLE_TEST_MARK={uuid.uuid4().hex}"
    key, value = marker.split("=")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "predict.py"), "ensemble.sizee=3"],
        cwd=tmp_path,
        env=tool_env(**{key: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("geoensemble predict: error:")
    assert processes_with(marker) == []


def test_a_prewarmed_helper_is_used_only_where_it_was_started(
    store: Tracker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process running several stages (a notebook, the tests) takes the prewarmed helper
    only when nothing it inherited changed since; else a new one, and the old one ends."""
    from geoensemble.tracking import runbook

    runbook.prewarm()
    spare = runbook._spare
    assert spare is not None
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    assert book.proc is spare and runbook._spare is None
    book.close()

    runbook.prewarm()
    stale = runbook._spare
    assert stale is not None
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path / "elsewhere"))
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    assert book.proc is not stale and stale.poll() is not None  # the stale one is gone
    book.close()


def test_what_a_library_prints_in_the_helper_does_not_break_its_answers(
    store: Tracker, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The helper's stdout carries its answers: what a library prints there (here at the
    interpreter's start, before the helper moves stdout to stderr) is passed on to stderr."""
    hook = Path(store.uri.removeprefix("sqlite:///")).parent / "sitecustomize.py"
    hook.write_text("print('a library says hello on stdout')\n")
    monkeypatch.setenv("PYTHONPATH", f"{hook.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    book = RunBookProcess(Tracker(store.uri, experiment="ex"))
    book.start(**SPEC)
    book.finish(artifacts=[], metrics={"m": 1.0})
    book.close()
    assert the_run(store, book.run_id()).info.status == "FINISHED"  # type: ignore[attr-defined]
    assert "a library says hello on stdout" in capfd.readouterr().err
