"""Bad inputs: each fails with the right error class and a message naming what and how to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine

from geoensemble.app.config import DataConfig
from geoensemble.errors import (
    ConfigError,
    EmptyLayerError,
    GridMismatchError,
    InputFileError,
    LayerNotFoundError,
)
from geoensemble.io.stack import build_stack, write_stack
from tests.io.conftest import T30, data, ramp, write_tif

Case = Callable[[Path], DataConfig]


def _two(tmp: Path, b_kw: dict[str, Any] | None = None, b: np.ndarray | None = None) -> Path:
    write_tif(tmp / "in" / "red.tif", ramp(16, 16, "uint16"), nodata=0)
    write_tif(tmp / "in" / "nir.tif", ramp(16, 16) if b is None else b, **(b_kw or {}))
    return tmp / "in"


def missing_path(tmp: Path) -> DataConfig:
    return data(tmp / "nowhere")


def no_file_matches_pattern(tmp: Path) -> DataConfig:
    return data(_two(tmp), pattern="*.jp2")


def no_layer_matched(tmp: Path) -> DataConfig:
    return data(_two(tmp), {"name": "swir", "file": "swir"})


def two_layers_matched(tmp: Path) -> DataConfig:
    return data(_two(tmp), {"name": "any", "file": r"\.tif$"})


def unreadable_file(tmp: Path) -> DataConfig:
    folder = _two(tmp)
    (folder / "nir.tif").write_bytes(b"this is not a GeoTiff at all" * 10)
    return data(folder)


def truncated_file(tmp: Path) -> DataConfig:
    big = np.random.default_rng(0).integers(1, 9999, (512, 512), dtype="uint16")
    write_tif(tmp / "in" / "red.tif", big)
    write_tif(tmp / "in" / "nir.tif", big)
    f = tmp / "in" / "nir.tif"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return data(tmp / "in")


def mismatched_grid_strict(tmp: Path) -> DataConfig:
    return data(_two(tmp, {"transform": T30 @ Affine.translation(3, 0)}), reference="red")


def all_nodata_layer(tmp: Path) -> DataConfig:
    return data(
        _two(tmp, b=np.full((16, 16), -9999, "int16")),
        {"name": "red"},
        {"name": "nir", "nodata": [-9999]},
    )


def crs_on_some_layers_only(tmp: Path) -> DataConfig:
    return data(_two(tmp, {"crs": None}))


def no_crs_and_different_grids(tmp: Path) -> DataConfig:
    write_tif(tmp / "in" / "a.tif", ramp(16, 16), crs=None, transform=Affine.identity())
    write_tif(tmp / "in" / "b.tif", ramp(16, 12), crs=None, transform=Affine.identity())
    return data(tmp / "in", align="reproject")


def netcdf_variable_not_found(tmp: Path) -> DataConfig:
    from tests.io.test_formats import write_cf_netcdf

    write_cf_netcdf(tmp / "s.nc")
    return data(tmp / "s.nc", {"name": "swir", "variable": "^swir$"})


def truncated_netcdf(tmp: Path) -> DataConfig:
    from tests.io.test_formats import write_cf_netcdf

    write_cf_netcdf(tmp / "s.nc")
    raw = (tmp / "s.nc").read_bytes()
    (tmp / "s.nc").write_bytes(raw[: len(raw) // 3])
    return data(tmp / "s.nc")


def hdf4_not_hdf4(tmp: Path) -> DataConfig:
    (tmp / "x.hdf").write_bytes(b"\x0e\x03\x13\x01" + b"\x00" * 64)
    return data(tmp / "x.hdf")


def band_out_of_range(tmp: Path) -> DataConfig:
    return data(_two(tmp), {"name": "red", "band": 3})


def window_too_large(tmp: Path) -> DataConfig:
    return data(_two(tmp), {"name": "red", "window": [10, 0, 10, 16]})


def bbox_outside(tmp: Path) -> DataConfig:
    return data(_two(tmp), {"name": "red", "bbox": [0.0, 0.0, 10.0, 10.0]})


def reference_unknown(tmp: Path) -> DataConfig:
    return data(_two(tmp), reference="blue")


def folder_given_a_file_format(tmp: Path) -> DataConfig:
    return data(_two(tmp), format="netcdf")


CASES: list[tuple[Case, type[Exception], str]] = [
    (missing_path, InputFileError, r"input .*nowhere does not exist: set path to"),
    (no_file_matches_pattern, LayerNotFoundError, r"no file in .* matches pattern='\*\.jp2'"),
    (
        no_layer_matched,
        LayerNotFoundError,
        r"layer 'swir'\): nothing matches file 'swir'.*nir\.tif",
    ),
    (two_layers_matched, LayerNotFoundError, r"layer 'any'\): 2 files match .*make the expression"),
    (unreadable_file, InputFileError, r"cannot read .*nir\.tif.*complete raster file"),
    (truncated_file, InputFileError, r"cannot read .*nir\.tif.*(truncated|complete)"),
    (
        mismatched_grid_strict,
        GridMismatchError,
        r"layer 'nir' \(.*nir\.tif\) is not on the grid of 'red'.*bounds \(440090.*"
        r"Set align=reproject",
    ),
    (all_nodata_layer, EmptyLayerError, r"layer 'nir' \(.*nir\.tif\) holds no valid pixel"),
    (crs_on_some_layers_only, GridMismatchError, r"layers \['nir'\] have no CRS while \['red'\]"),
    (no_crs_and_different_grids, GridMismatchError, r"layer 'b' .*has no CRS.*cannot be reproj"),
    (netcdf_variable_not_found, LayerNotFoundError, r"nothing matches variable '\^swir\$'.*'red'"),
    (truncated_netcdf, InputFileError, r"cannot read .*s\.nc"),
    (hdf4_not_hdf4, InputFileError, r"cannot read .*x\.hdf as HDF4"),
    (band_out_of_range, LayerNotFoundError, r"band=3 was asked for.*has 1 band"),
    (window_too_large, InputFileError, r"window \[row_off=10.*does not fit.*16 x 16"),
    (bbox_outside, InputFileError, r"bbox \[0\.0, 0\.0, 10\.0, 10\.0\] does not overlap"),
    (reference_unknown, LayerNotFoundError, r"^reference='blue' is not a layer: choose"),
    (
        folder_given_a_file_format,
        InputFileError,
        r"is a folder, but format=netcdf expects a file: point path at",
    ),
]


@pytest.mark.parametrize(("case", "error", "match"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_fails_clearly(
    tmp_path: Path, case: Case, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        cfg = case(tmp_path)
        write_stack(build_stack(cfg), tmp_path / "stack")
    assert not (tmp_path / "stack").exists()
    assert not list(tmp_path.glob(".stack.partial-*"))  # nothing half-written is left


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("data.format=jpeg", r"data\.format='jpeg'.*geotiff_dir"),
        ("data.resampling=smooth", r"data\.resampling='smooth'.*bilinear"),
        ("data.crs=EPSG:0", r"data\.crs='EPSG:0'"),
        ("data.geotransform=[0,1,0]", r"data\.geotransform=.*GDAL order"),
        ("data.target.bounds=[1,0,0,1]", r"data\.target\.bounds"),
        ("data.target.resolution=[0]", r"data\.target\.resolution"),
        ("data.layers=[{name:a},{name:a}]", r"data\.layers=\['a'\]"),
        ("data.layers=[{name:a,window:[0,0,0,5]}]", r"data\.layers\[0\]\.window"),
        ("data.layers=[{name:a,out_shape:[5]}]", r"data\.layers\[0\]\.out_shape"),
        (
            "data.layers=[{name:a,out_shape:[5,5],resolution:[30]}]",
            r"either out_shape or resolution",
        ),
        ("data.layers=[{name:a,meta_value:x}]", r"data\.layers\[0\]\.meta_key"),
        ("data.layers=[{name:a,resampling:best}]", r"data\.layers\[0\]\.resampling"),
        ("data.layers=[{name:a,band:0}]", r"data\.layers\[0\]\.band=0"),
        ("data.layers=[{name:a,window:[0,0,5]}]", r"data\.layers\[0\]\.window"),
        ("data.layers=[{name:a,colour:red}]", r"data\.layers\[0\]\.colour|colour"),
    ],
)
def test_bad_data_config_names_the_key(
    make_cfg: Callable[..., Any], override: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        make_cfg(override)
