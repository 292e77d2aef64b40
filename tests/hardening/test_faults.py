"""Faults: a killed predict leaves no finished-looking map, a killed dask worker loses no
member (or fails clearly), an unreachable MLflow server fails fast, and two trainings that
share one SQLite store lose no run.

Real processes, real signals, a real LocalCluster, real SQLite stores; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from geoensemble.errors import ComputeError, TrackingError
from geoensemble.io.atomic import TMP_MARK
from geoensemble.io.stack import open_store, store_meta
from tests.conftest import ROOT, tool_env
from tests.hardening.conftest import stage_cfg
from tests.hardening.estimators import SlowModel
from tests.integration.conftest import free_port, tiny_overrides

FAULTY = "tests.hardening.estimators.FaultyKMeans"


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{TMP_MARK}*")) if folder.is_dir() else []


# --------------------------------------------------------------------------- killed predict
def slow_predict(tmp: Path, names: list[str]) -> list[str]:
    """Overrides predicting with the slow model saved as ``tmp/slow.pkl`` in many small
    blocks on one thread: seconds of writing to interrupt."""
    return [
        f"predict.external.path={tmp}/slow.pkl",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(names)}]",
        "predict.external.label=slow",
        "predict.block_size=16",  # 56 blocks x 0.25 s
        "predict.threads=1",
        "predict.progress=false",
    ]


def save_slow_model(path: Path, features: Path, delay: float) -> list[str]:
    """A K-Means fitted on the scene, wrapped to sleep ``delay`` s per predict call."""
    from sklearn.cluster import KMeans

    names = list(store_meta(features).get("feature_names"))
    ds = open_store(features)
    X = np.stack([ds[n].to_numpy().ravel() for n in names], axis=1)
    X = X[~np.isnan(X).any(axis=1)]
    km = KMeans(n_clusters=4, n_init=1, random_state=0).fit(X[::7])
    path.write_bytes(pickle.dumps(SlowModel(km, delay)))
    return names


def test_predict_killed_mid_write_leaves_no_finished_map_and_a_rerun_cleans_up(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = save_slow_model(tmp_path / "slow.pkl", featurized / "features", delay=0.25)
    maps = tmp_path / "maps"
    target = maps / "synthetic_slow.tif"
    overrides = [
        *tiny_overrides(featurized),
        f"predict.output_dir={maps}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        *slow_predict(tmp_path, names),
    ]
    proc = subprocess.Popen(
        [sys.executable, "pipelines/predict.py", *overrides],
        cwd=ROOT,
        env=tool_env(PYTHONPATH=str(ROOT), GEOENSEMBLE_ROOT=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not partials(maps) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert partials(maps), f"predict never started writing:\n{proc.communicate()[0]!r}"
        time.sleep(0.5)  # some blocks are in the scratch file now
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # Nothing that looks finished: only hidden .partial- leftovers, no map, no sidecar.
    assert not target.exists()
    visible = [p.name for p in maps.iterdir() if not p.name.startswith(".")]
    assert visible == []
    left = partials(maps)
    assert left and all(p.name.startswith(f".{target.name}{TMP_MARK}") for p in left)
    foreign = maps / f".someone_else.tif{TMP_MARK}0000beef"  # another writer's: kept
    foreign.write_bytes(b"x")

    # A rerun (fast model, same output names) completes and removes its own leftovers.
    save_slow_model(tmp_path / "slow.pkl", featurized / "features", delay=0.0)
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate

    cfg = validate(compose(overrides, config_dir=ROOT / "conf"))
    out = stages.predict(cfg)
    assert partials(maps) == [foreign]
    assert out["path"] == str(target)
    with rasterio.open(target) as src:
        got = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    ds = open_store(featurized / "features")
    cube = np.stack([ds[n].to_numpy() for n in names])
    mask = ~np.isnan(cube).any(axis=0)
    model = pickle.loads((tmp_path / "slow.pkl").read_bytes())
    np.testing.assert_array_equal(got[mask], model.predict(cube[:, mask].T))
    assert (got[~mask] == 255).all()
    # The killed run's MLflow run does not stay RUNNING: the rerun marked it KILLED.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    [exp] = [x for x in client.search_experiments() if x.name == cfg.tracking.experiment]
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.info.status for r in runs] == ["KILLED", "FINISHED"]
    assert "ended without closing the run" in runs[0].data.tags["failure_reason"]
    assert target.with_suffix(".png").exists() and Path(f"{target}.aux.xml").exists()


# --------------------------------------------------------------------------- killed workers
def faulty_overrides(markers: Path, *extra: str) -> list[str]:
    return [
        f"model.estimator._target_={FAULTY}",
        f"+model.estimator.marker_dir={markers}",
        "trust.modules=[tests]",
        "trust.params=[marker_dir]",
        "model.space.n_clusters=[4,5,6,7]",
        "compute.processes=true",
        "compute.n_workers=2",
        "ensemble.previews=false",
        *extra,
    ]


def test_worker_killed_during_a_fit_loses_no_member(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = stage_cfg(featurized, tmp_path, *faulty_overrides(markers, "+model.estimator.delay=3.0"))
    killed: list[int] = []

    def killer() -> None:
        # SIGKILL the first worker process seen fitting a member, once.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = sorted(markers.glob("started-*"))
            if started:
                pid = int(started[0].read_text())
                time.sleep(0.3)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    report = stages.train(cfg)
    t.join(5)
    assert killed and killed[0] != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)  # the worker really died
    # the killed worker's member ran again elsewhere: more fits started than members
    assert len(list(markers.glob("started-*"))) > len(report["members"])
    assert len(report["members"]) == cfg.ensemble.size
    assert all(np.isfinite(m["aic"]) for m in report["members"])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    parent = client.get_run(report["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == cfg.ensemble.size
    assert all(c.info.status == "FINISHED" for c in children)


def test_member_that_keeps_killing_workers_fails_clearly_and_marks_the_run_failed(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    markers = tmp_path / "markers"
    markers.mkdir()
    # the one member, member-000, fits n_clusters=5: it SIGKILLs whichever worker runs it
    cfg = stage_cfg(
        featurized,
        tmp_path,
        *faulty_overrides(
            markers,
            "+model.estimator.crash_k=5",
            "compute.retries=1",
            "model.space.n_clusters=[5]",
            "ensemble.size=1",
        ),
    )
    with pytest.raises(ComputeError, match=r"member-000 killed every dask worker.*2 tries") as e:
        stages.train(cfg)
    assert "compute.memory_limit" in str(e.value) and "features.sample.size" in str(e.value)
    assert len(list(markers.glob("started-*-5"))) == 2  # tried once, retried once
    assert not (tmp_path / "reports" / "train.json").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = mlflow.MlflowClient()
    [exp] = [x for x in client.search_experiments() if x.name == cfg.tracking.experiment]
    [parent] = client.search_runs([exp.experiment_id], "tags.`geoensemble.role` = 'ensemble'")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["failure_reason"].startswith("ComputeError: member-000")
    assert client.search_registered_models() == []


# --------------------------------------------------------------------------- MLflow server down
@pytest.mark.parametrize("stage", ["train", "predict"])
def test_unreachable_tracking_server_fails_fast_with_a_clear_error(
    featurized: Path, tmp_path: Path, stage: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = stage_cfg(featurized, tmp_path, f"tracking.uri={url}", "tracking.timeout=5")
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match=rf"server {url} does not answer.*tracking\.uri"):
        stages.STAGES[stage](cfg)
    assert time.monotonic() - t0 < 30  # a hang guard, not a benchmark
    assert not (tmp_path / "reports" / "train.json").exists()
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def test_unreachable_server_from_the_command_line_is_one_clear_line(
    featurized: Path, tmp_path: Path
) -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "pipelines/train.py",
            *tiny_overrides(featurized),
            f"paths.reports={tmp_path}/reports",
            f"tracking.uri={url}",
        ],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2
    assert "error: the MLflow tracking server http://user:***@127.0.0.1" in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- shared SQLite store
def test_two_trainings_on_one_new_sqlite_store_at_once_lose_no_run(
    featurized: Path, tmp_path: Path
) -> None:
    store = tmp_path / "mlflow.db"
    procs = []
    for i, k in enumerate((4, 6)):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "pipelines/train.py",
                    *tiny_overrides(featurized),
                    f"paths.reports={tmp_path}/reports{i}",
                    f"tracking.uri=sqlite:///{store}",
                    f"model.n_clusters={k}",
                    "model.space={}",
                    "ensemble.size=2",
                ],
                cwd=ROOT,
                env=tool_env(GEOENSEMBLE_ROOT=str(tmp_path)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
    reports = [json.loads((tmp_path / f"reports{i}" / "train.json").read_text()) for i in (0, 1)]
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    client = mlflow.MlflowClient()
    exp_ids = {r["experiment_id"] for r in reports}
    assert len(exp_ids) == 1  # both found (or created) the same experiment
    runs = client.search_runs(list(exp_ids), max_results=1000)
    parents = [r for r in runs if r.data.tags.get("geoensemble.role") == "ensemble"]
    assert sorted(r.info.run_id for r in parents) == sorted(r["parent_run_id"] for r in reports)
    assert all(r.info.status == "FINISHED" for r in runs)
    for rep in reports:
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == rep["parent_run_id"]]
        assert sorted(r.info.run_id for r in kids) == sorted(m["run_id"] for m in rep["members"])
    versions = client.search_model_versions(f"name = '{reports[0]['model_name']}'")
    assert sorted(int(v.version) for v in versions) == list(
        range(1, 1 + sum(len(r["kept"]) for r in reports))
    )
