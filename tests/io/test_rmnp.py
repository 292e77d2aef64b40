"""Acceptance on real data: ../shared/data/rmnp, whose DEM is on another grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geoensemble.app.config import AppConfig
from geoensemble.app.stages import ingest
from geoensemble.errors import GridMismatchError
from geoensemble.io.stack import build_stack, grid_attrs, open_store, store_meta
from tests.conftest import ROOT, run
from tests.io.conftest import data


def _dem_on_red_grid(rmnp: Path) -> np.ndarray:
    """The reference result: the whole DEM reprojected in one go by rasterio."""
    with rasterio.open(rmnp / "rmnp-dem.tif") as d, rasterio.open(rmnp / "red.tif") as r:
        src = d.read(1).astype("float32")
        src[src == d.nodata] = np.nan
        out = np.full(r.shape, np.nan, dtype="float32")
        reproject(
            src,
            out,
            src_transform=d.transform,
            src_crs=d.crs,
            dst_transform=r.transform,
            dst_crs=r.crs,
            src_nodata=np.nan,
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    return out


def test_strict_names_the_dem_its_grid_and_the_fix(rmnp: Path) -> None:
    with pytest.raises(GridMismatchError) as exc:
        build_stack(data(rmnp, reference="red"))
    msg = str(exc.value)
    assert "layer 'rmnp-dem'" in msg and "rmnp-dem.tif" in msg
    assert "resolution 0.00275 x 0.00211, shape 187 x 152" in msg  # the DEM's grid
    assert "'red'" in msg and "resolution 0.0015 x 0.0015, shape 373 x 485" in msg
    assert "EPSG:4326" in msg and "bounds (-105.913, 40.1591, -105.495, 40.5537)" in msg
    assert "Set align=reproject" in msg


@pytest.mark.parametrize("chunk_size", [64, 1024])
def test_reproject_aligns_the_dem_onto_reds_grid(rmnp: Path, chunk_size: int) -> None:
    ds = build_stack(data(rmnp, align="reproject", reference="red", chunk_size=chunk_size))
    assert list(ds.data_vars) == ["blue", "green", "red", "rmnp-dem"]
    with rasterio.open(rmnp / "red.tif") as r:
        red, red_t, red_shape = r.read(1), r.transform, r.shape
    crs, t = grid_attrs(ds)
    assert crs is not None and crs.to_epsg() == 4326
    assert np.allclose(t[:6], red_t[:6]) and ds["rmnp-dem"].shape == red_shape
    got = ds["rmnp-dem"].values
    want = _dem_on_red_grid(rmnp)
    # Block-wise reading gives exactly the whole-array reprojection, NaN outside the DEM.
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3, equal_nan=True)
    assert 0.3 < np.isfinite(got).mean() < 0.5  # the DEM covers part of red's extent
    assert 2200 < np.nanmin(got) < np.nanmax(got) < 4300
    # red itself is untouched: its nodata (255) became NaN, other values kept.
    r = ds["red"].values
    np.testing.assert_array_equal(np.isnan(r), red == 255)
    np.testing.assert_array_equal(r[red != 255], red[red != 255])


def test_ingest_stage_with_data_rmnp_writes_store_and_report(
    rmnp: Path, make_cfg: Callable[..., AppConfig], tmp_path: Path
) -> None:
    cfg = make_cfg("data=rmnp", f"data.path={rmnp}", "data.chunk_size=128")
    meta = ingest(cfg)
    assert set(meta["layers"]) == {"blue", "green", "red", "dem"}
    assert meta["format"] == "geotiff_dir" and meta["shape"] == [373, 485]
    dem = meta["layers"]["dem"]
    assert 0.3 < dem["valid_fraction"] < 0.5 and 2200 < dem["min"] < dem["max"] < 4300
    store = open_store(cfg.paths.stack)
    assert store["dem"].chunks == ((128, 128, 117), (128, 128, 128, 101))
    assert store_meta(cfg.paths.stack)["layers"]["red"]["max"] == 254.0
    assert (Path(cfg.paths.reports) / "ingest.json").is_file()


def test_cli_ingest_data_rmnp_strict_fails_with_one_clear_line(rmnp: Path, tmp_path: Path) -> None:
    proc = run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            str(ROOT / "pipelines" / "ingest.py"),
            "data=rmnp",
            f"data.path={rmnp}",
            "data.align=strict",
            f"paths.stack={tmp_path}/stack",
            f"paths.reports={tmp_path}/reports",
        ],
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert "layer 'dem' (" in proc.stderr and "rmnp-dem.tif) is not on the grid of 'red'" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "stack").exists()
