"""``predict.model_uri=train_report``: the pipeline's predict uses exactly the version its
train recorded in ``reports/train.json``, wherever ``@champion`` points meanwhile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from geoensemble.app.config import TrackingConfig
from geoensemble.errors import ConfigError, InputFileError
from geoensemble.io.stack import write_store
from tests.predict.conftest import NAMES, fit_kmeans, make_scene, register


def test_predict_loads_the_version_of_the_train_report_not_the_champion(
    tmp_path: Path, make_cfg, store: TrackingConfig
) -> None:
    write_store(make_scene(), tmp_path / "features", meta={"feature_names": NAMES})
    _, (v1, v2) = register(store, [fit_kmeans(NAMES, 4), fit_kmeans(NAMES, 6)], NAMES)
    from geoensemble.app.tracker import tracker_for

    tracker_for(store).set_alias(store.model_name, "champion", v2)  # promoted meanwhile
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/train.json").write_text(
        json.dumps({"model_name": "geoensemble", "champion": {"version": v1}})
    )
    out = stages.predict(make_cfg("predict.model_uri=train_report", "predict.progress=false"))
    path = Path(out["path"])
    # @champion is v2 now: the training's best is not named champion (nor by its version)
    assert path.name == "synthetic_geoensemble_best.tif"
    with rasterio.open(path) as src:
        tags = src.tags()
        arr = src.read(1)
        classes = len(np.unique(arr[arr != src.nodata]))
    assert tags["model_version"] == v1 and tags["model_uri"] == f"models:/geoensemble/{v1}"
    assert classes == 4  # version 1 has 4 clusters, the champion 6


@pytest.mark.parametrize(
    ("report", "error", "match"),
    [
        (None, InputFileError, r"predict\.model_uri=train_report reads .*train\.json, which "),
        (
            "{not json",
            InputFileError,
            r"cannot read .*train\.json \(JSONDecodeError\): it is not the report the train "
            r"stage wrote .*restore it",
        ),
        (
            {"model_name": "geoensemble"},
            InputFileError,
            r"records no champion model \(champion\.uri or champion\.version, model_name\): "
            r"it is not the report the train stage wrote",
        ),
        (
            {"model_name": "other", "champion": {"version": "1"}},
            ConfigError,
            r"records model 'other' but tracking\.model_name='geoensemble': set "
            r"tracking\.model_name=other",
        ),
    ],
    ids=["missing", "not-json", "no-version", "other-model"],
)
def test_a_bad_train_report_is_one_error_naming_it(
    tmp_path: Path, make_cfg, report: object, error: type[Exception], match: str
) -> None:
    (tmp_path / "reports").mkdir()
    if report is not None:
        text = report if isinstance(report, str) else json.dumps(report)
        (tmp_path / "reports/train.json").write_text(text)
    from geoensemble.app.members import train_report_uris

    with pytest.raises(error, match=match):
        train_report_uris(make_cfg("predict.model_uri=train_report"))


def test_the_report_names_the_champion_then_every_kept_member(tmp_path: Path, make_cfg) -> None:
    from geoensemble.app.members import train_report_uris

    (tmp_path / "reports").mkdir()
    report = {
        "model_name": "geoensemble",
        "champion": {"member": "member-004", "version": "7"},
        "kept": [
            {"member": "member-001", "version": "9", "rank": 3},
            {"member": "member-004", "version": "7", "rank": 1},
            {"member": "member-002", "version": "8", "rank": 2},
        ],
    }
    (tmp_path / "reports/train.json").write_text(json.dumps(report))
    uris = train_report_uris(make_cfg("predict.model_uri=train_report"))
    assert uris == ["models:/geoensemble/7", "models:/geoensemble/8", "models:/geoensemble/9"]
