"""Lean outputs (``predict=lean``), the stage's phase times, and quicklooks built from the
blocks as they are written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio

from geoensemble import plots
from geoensemble.app import stages
from geoensemble.app.config import TrackingConfig
from geoensemble.io.stack import write_store
from geoensemble.predict.blocks import blocks
from geoensemble.predict.timing import LOG_PREFIX
from geoensemble.predict.writer import thin_into
from tests.predict.conftest import NAMES, fit_forest, make_scene, register, valid_table

H, W = 620, 700  # > 512: the default COG gets an overview


@pytest.fixture
def project(tmp_path: Path, store: TrackingConfig) -> Path:
    write_store(make_scene(H, W, chunks=256), tmp_path / "features", meta={"feature_names": NAMES})
    return tmp_path


def test_lean_writes_only_the_class_map_without_overviews_and_records_phases(
    project: Path, make_cfg, store: TrackingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    est = fit_forest(NAMES, 0)
    register(store, [est], NAMES)
    caplog.set_level(logging.INFO, logger="geoensemble")
    out = stages.predict(make_cfg("predict=lean", "predict.block_size=512"))
    maps = out["scenes"]["synthetic"]["maps"]
    assert list(maps) == ["member:0"]  # no max-probability map
    path = Path(maps["member:0"])
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, f"{path.name}.aux.xml", path.with_suffix(".qml").name]
    )  # no quicklook
    X, mask = valid_table(make_scene(H, W), NAMES)
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == []
        assert src.profile["compress"] == "lzw" and src.block_shapes[0] == (512, 512)
        np.testing.assert_array_equal(src.read(1)[mask], est.predict(X))
    [line] = [r.getMessage() for r in caplog.records if LOG_PREFIX in r.getMessage()]
    phases = json.loads(line.split(LOG_PREFIX, 1)[1])
    assert {"tracking", "models", "read", "predict", "write", "cog", "blocks"} <= set(phases)
    assert "quicklook" not in phases and all(v >= 0 for v in phases.values())
    metrics = mlflow.MlflowClient().get_run(out["run_id"]).data.metrics
    assert {"seconds_read", "seconds_predict", "seconds_cog"} <= set(metrics)


def test_default_quicklook_is_drawn_from_the_blocks_with_its_legend(
    project: Path, make_cfg, store: TrackingConfig
) -> None:
    register(store, [fit_forest(NAMES, 0)], NAMES)
    out = stages.predict(make_cfg("predict.block_size=512"))
    path = Path(out["path"])
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2]
    png = path.with_suffix(".png")
    legend = plots.legend_of(png)
    assert [e["name"] for e in legend] and all(e["colour"].startswith("#") for e in legend)
    from PIL import Image

    with Image.open(png) as img:
        assert img.mode == "RGBA" and min(img.size) >= H


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_thumbnail_built_block_by_block_equals_the_decimated_map(step: int) -> None:
    rng = np.random.default_rng(step)
    full = rng.integers(0, 9, size=(250, 310)).astype(np.uint8)
    thumb = np.full((-(-250 // step), -(-310 // step)), 255, np.uint8)
    for b in blocks(250, 310, 100):  # offsets 100, 200: not multiples of 3 or 7
        thin_into(thumb, step, b, full[b.slices])
    np.testing.assert_array_equal(thumb, full[::step, ::step])


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--help"], 0, "predict"),
        (["predict.threads=-1"], 2, "predict.threads=-1 is out of range"),
        (["predict.no_such_key=1"], 2, "unknown config key 'predict.no_such_key'"),
    ],
)
def test_predict_script_exits_with_the_stage_code_and_one_line(
    tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    """``pipelines/predict.py`` leaves without the interpreter's teardown, keeping the codes."""
    import subprocess
    import sys

    from tests.conftest import ROOT, tool_env

    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "predict.py"), *args],
        cwd=tmp_path,
        env=tool_env(PYTHONPATH=f"{ROOT / 'src'}"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    assert needle in (proc.stdout if code == 0 else proc.stderr)
    assert "Traceback" not in proc.stderr
    if code:
        assert len(proc.stderr.strip().splitlines()) == 1
