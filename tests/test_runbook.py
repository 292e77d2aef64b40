"""The predict run's bookkeeping on a background thread (real SQLite stores): it records what
the stage asks and ends the run as the stage ended."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from geoensemble.tracking import Background, Tracker, session
from geoensemble.tracking.runbook import RunBook
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
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    reset_mlflow_uris()
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", experiment="ex")
    tracker.open()
    yield tracker
    session.forget()
    reset_mlflow_uris()


def the_run(tracker: Tracker, run_id: str) -> object:
    from mlflow import MlflowClient

    return MlflowClient(tracker.uri, tracker.uri).get_run(run_id)


def test_the_book_records_the_run_and_its_artifacts(store: Tracker, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    png = tmp_path / "scene_m_champion.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    book = RunBook(store, Background())
    book.start(**SPEC)
    run_id = book.run_id()
    book.finish(artifacts=[str(png)], metrics={"valid_pixels": 1234.0, "seconds_read": 0.5})
    book.close()

    run = the_run(store, run_id)
    assert run.info.status == "FINISHED"  # type: ignore[attr-defined]
    assert run.info.run_name == SPEC["run_name"]  # type: ignore[attr-defined]
    assert run.data.params == {"block_size": "1024", "scenes": "scene"}  # type: ignore[attr-defined]
    assert run.data.metrics == {"valid_pixels": 1234.0, "seconds_read": 0.5}  # type: ignore[attr-defined]
    assert run.data.tags["geoensemble.role"] == "predict"  # type: ignore[attr-defined]
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
    book = RunBook(store, Background())
    book.start(**SPEC)
    run_id = book.run_id()
    book.fail(exc)
    run = the_run(store, run_id)
    assert run.info.status == status  # type: ignore[attr-defined]
    assert run.data.tags["failure_reason"] == reason  # type: ignore[attr-defined]
