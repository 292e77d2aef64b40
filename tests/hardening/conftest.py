"""Fixtures of the hardening tests: one tiny scene featurized (and trained on) once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import compose_tiny, reset_mlflow_uris


@pytest.fixture(autouse=True)
def _fresh_mlflow_uris() -> Iterator[None]:
    """Stages set MLflow's process-wide URIs: every test starts without another's store."""
    reset_mlflow_uris()
    yield
    reset_mlflow_uris()


@pytest.fixture(scope="session")
def featurized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny scene ingested, featurized and labelled (built once)."""
    from geoensemble.app import stages

    d = tmp_path_factory.mktemp("hardening")
    cfg = compose_tiny(d)
    for stage in ("scene", "ingest", "featurize", "labels"):
        stages.STAGES[stage](cfg)
    return d


def stage_cfg(features: Path, out: Path, *overrides: str) -> Any:
    """A tiny config reading ``features``' scene and writing store, reports and maps to
    ``out``."""
    return compose_tiny(
        features,
        f"paths.reports={out}/reports",
        f"predict.output_dir={out}/maps",
        f"tracking.uri=sqlite:///{out}/mlflow.db",
        *overrides,
    )


SECRET_DATA_PATH = "https://alice:s3cret@example.com/scenes/scene.tif?token=t0ps3cret&band=1"


@pytest.fixture(scope="session")
def trained(featurized: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ensemble trained on the tiny scene into its own SQLite store, as a user whose home
    folder holds the project, with credentials in a config value (``data.path``: train does
    not read it)."""
    from geoensemble.app import stages

    out = tmp_path_factory.mktemp("trained")
    home = out.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("GEOENSEMBLE_ROOT", str(out))
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        cfg = stage_cfg(featurized, out, f"data.path='{SECRET_DATA_PATH}'")
        report = stages.train(cfg)
        reset_mlflow_uris()
    return {"dir": out, "home": home, "report": report, "uri": f"sqlite:///{out}/mlflow.db"}
