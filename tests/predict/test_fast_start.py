"""A registered version of a local SQLite store loads without importing MLflow (read with
sqlite3), with the same checks; anything unusual falls back to MLflow's own path."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoensemble.app.config import TrackingConfig
from geoensemble.app.tracker import tracker_for
from geoensemble.errors import InputFileError
from geoensemble.tracking.local import local_version, schema_current
from tests.conftest import ROOT, tool_env
from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, register, valid_table

# In a fresh process: load two registered versions, say whether MLflow was imported.
SCRIPT = r"""
import json, sys
import numpy as np
from geoensemble.tracking import Tracker
from tests.predict.conftest import NAMES, make_scene, valid_table

tracker = Tracker(sys.argv[1])
X, _ = valid_table(make_scene(seed=1), NAMES)
out = {}
for uri in sys.argv[2:]:
    m = tracker.load_model(uri)
    out[uri] = {
        "names": m.feature_names, "version": m.version, "model_id": m.model_id,
        "sha256": (m.tags or {}).get("geoensemble.skops_sha256"),
        "predict": np.asarray(m.model.predict(X)).tolist(),
    }
out["mlflow_imported"] = sorted(k for k in sys.modules if k == "mlflow" or k.startswith("mlflow."))
print("RESULT " + json.dumps(out))
"""


def _load_in_fresh_process(uri: str, models: list[str], cwd: Path) -> dict:
    env = tool_env(PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, uri, *models],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return dict(json.loads(line.removeprefix("RESULT ")))


def test_registered_versions_load_without_mlflow(store: TrackingConfig, tmp_path: Path) -> None:
    kmeans, forest = fit_kmeans(NAMES), fit_forest(NAMES)
    _, versions = register(store, [kmeans, forest], NAMES)
    assert store.uri is not None
    out = _load_in_fresh_process(
        store.uri, ["models:/geoensemble@champion", f"models:/geoensemble/{versions[1]}"], tmp_path
    )
    assert out.pop("mlflow_imported") == []
    X, _ = valid_table(make_scene(seed=1), NAMES)
    tracker = tracker_for(store)
    for (uri, got), model in zip(out.items(), [kmeans, forest], strict=True):
        assert got["names"] == NAMES
        np.testing.assert_array_equal(got["predict"], model.predict(X))  # type: ignore[attr-defined]
        # the same version, tags and logged model as MLflow's own path gives
        ref = tracker._load_mlflow(uri, ())
        assert (got["version"], got["model_id"]) == (ref.version, ref.model_id)
        assert got["sha256"] == (ref.tags or {})["geoensemble.skops_sha256"]


def test_a_changed_file_is_refused_on_the_sqlite_path(store: TrackingConfig) -> None:
    register(store, [fit_kmeans(NAMES)], NAMES)
    assert store.uri is not None
    found = local_version(store.uri, "models:/geoensemble@champion")
    assert found is not None
    skops_file = found.folder / "model.skops"
    data = bytearray(skops_file.read_bytes())
    data[-30] ^= 0xFF  # one byte of the zip's directory
    skops_file.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match=r"its model\.skops is not the file registered"):
        tracker_for(store).load_model("models:/geoensemble@champion")


def test_anything_unusual_falls_back_to_mlflow(store: TrackingConfig, tmp_path: Path) -> None:
    _, versions = register(store, [fit_kmeans(NAMES)], NAMES)
    uri = store.uri
    assert uri is not None
    tracker = tracker_for(store)
    run_id = tracker.model_versions("geoensemble")[0].run_id
    for other in (
        f"runs:/{run_id}/model",  # not a registered version
        "models:/geoensemble@nosuchalias",
        "models:/nosuchmodel/1",
        "models:/geoensemble/latest",
        "http://127.0.0.1:9/x",
    ):
        assert local_version(uri, other) is None, other
    assert local_version("http://127.0.0.1:9", f"models:/geoensemble/{versions[0]}") is None
    # a store of another MLflow schema: MLflow's path reports it
    db = Path(uri.removeprefix("sqlite:///"))
    copy = tmp_path / "other" / "mlflow.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    con.close()
    assert schema_current(db) and not schema_current(copy)
    assert local_version(f"sqlite:///{copy}", "models:/geoensemble@champion") is None
    # the version's files moved elsewhere
    found = local_version(uri, "models:/geoensemble@champion")
    assert found is not None
    shutil.move(found.folder, tmp_path / "moved")
    assert local_version(uri, "models:/geoensemble@champion") is None
