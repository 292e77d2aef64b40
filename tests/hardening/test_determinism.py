"""Determinism: the same config and seed give the same maps and metrics with one worker
thread in the stage's process as with a LocalCluster of two worker processes.

Compared: every map's decoded pixels, profile, colour table and tags (except the run ids and
the config hash, which legitimately differ: the compute settings are part of the config);
then the map files byte for byte with those tags' values blanked out; the sidecars and
quicklooks byte for byte; ``reports/metrics.json``, ``reports/evaluation.json`` and
``reports/plots/*.json`` exactly; ``reports/train.json`` except run ids and timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from tests.hardening.conftest import stage_cfg

# Tags that name this run, not its result.
RUN_TAGS = {"predict_run_id", "member_run_ids", "model_run_id", "config_sha256"}
# train.json keys that are run ids (a training's own alias names its run), ids of logged
# models, where the store is (the UI command), or wall-clock times.
VOLATILE = {
    *("run_id", "parent_run_id", "alias", "model_id", "uri"),
    *("mlflow_ui_command", "mlflow_ui_url"),
    *("mlflow_seconds", "mlflow_share", "mlflow_background_seconds"),
    *("fit_seconds", "train_seconds"),
}

ENSEMBLE = ["ensemble.size=3", "ensemble.generations=2", "ensemble.keep=2", "ensemble.patience=5"]
ONE_WORKER = ["compute.processes=false", "compute.n_workers=1", "predict.scheduler=threads"]
CLUSTER = ["compute.processes=true", "compute.n_workers=2", "predict.scheduler=distributed"]


def pipeline(features: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> None:
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(out))
    cfg = stage_cfg(
        features, out, *ENSEMBLE, "predict.ensemble=latest", "predict.progress=false", *extra
    )
    for stage in ("train", "evaluate", "predict"):
        stages.STAGES[stage](cfg)


def strip(obj: Any) -> Any:
    """``obj`` without run ids and timings, at any depth."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def masked_bytes(path: Path) -> bytes:
    """The map file's bytes with the values of its run-naming tags blanked out in place
    (same length, so every other byte keeps its offset)."""
    data = path.read_bytes()
    with rasterio.open(path) as src:
        tags = src.tags()
    values = sorted((tags[k].encode() for k in RUN_TAGS & set(tags)), key=len, reverse=True)
    assert all(v in data for v in values)
    for value in values:  # longest first: one run id is part of the member_run_ids list
        data = data.replace(value, b"-" * len(value))
    return data


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param([], id="kmeans"),
        pytest.param(
            ["ensemble.sample=per_member", "model=gmm"],
            id="gmm-per-member-sample",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["ensemble.sample=per_member", "ensemble.consensus.enabled=true"],
            id="kmeans-consensus",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            [
                "model=random_forest",
                "ensemble=supervised",
                *ENSEMBLE,
                "predict.outputs.probabilities=true",
            ],
            id="random-forest-supervised",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_one_worker_and_a_cluster_give_identical_maps_and_metrics(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: list[str]
) -> None:
    a, b = tmp_path / "one_worker", tmp_path / "cluster"
    pipeline(featurized, a, monkeypatch, *ONE_WORKER, "predict.threads=1", *variant)
    pipeline(featurized, b, monkeypatch, *CLUSTER, *variant)

    maps = sorted(p.name for p in (a / "maps").iterdir())
    assert maps == sorted(p.name for p in (b / "maps").iterdir())
    tifs = [n for n in maps if n.endswith(".tif")]
    assert len(tifs) >= 3  # vote, agreement and a map per kept member
    for name in tifs:
        with rasterio.open(a / "maps" / name) as sa, rasterio.open(b / "maps" / name) as sb:
            pa, pb = sa.read(), sb.read()
            assert pa.dtype == pb.dtype and pa.tobytes() == pb.tobytes(), name
            assert sa.profile == sb.profile, name
            if sa.count == 1 and sa.dtypes[0] == "uint8" and "vote" in name:
                assert sa.colormap(1) == sb.colormap(1)
            ta, tb = sa.tags(), sb.tags()
            assert set(ta) == set(tb)
            assert {k: v for k, v in ta.items() if k not in RUN_TAGS} == {
                k: v for k, v in tb.items() if k not in RUN_TAGS
            }, name
            assert np.count_nonzero(pa != sa.nodata) > 1000
        ma, mb = masked_bytes(a / "maps" / name), masked_bytes(b / "maps" / name)
        assert ma == mb, f"{name} differs beyond its run tags"
    for name in maps:
        if not name.endswith(".tif"):  # quicklooks, .aux.xml category names, .qml styles
            assert (a / "maps" / name).read_bytes() == (b / "maps" / name).read_bytes(), name

    for report in ("metrics.json", "evaluation.json"):
        assert (a / "reports" / report).read_bytes() == (b / "reports" / report).read_bytes()
    plots = sorted(p.name for p in (a / "reports/plots").glob("*.json"))
    assert plots
    for name in plots:
        assert (a / "reports/plots" / name).read_bytes() == (
            b / "reports/plots" / name
        ).read_bytes(), name
    ta = json.loads((a / "reports/train.json").read_text())
    tb = json.loads((b / "reports/train.json").read_text())
    # two generations of 3; gmm's space holds 5 distinct members, so its second has only 2 new
    assert len(ta["members"]) >= 5 and len({m["generation"] for m in ta["members"]}) == 2
    assert all(np.isfinite(m[ta["metric"]]) for m in ta["members"])
    assert strip(ta) == strip(tb)
