"""Each format read from real files written here: values, names, grid and NaN placement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geoensemble.io.georef import MODIS_SINUSOIDAL
from geoensemble.io.grid import same_crs
from geoensemble.io.layers import detect_format
from geoensemble.io.stack import build_stack, grid_attrs, open_store, write_stack
from geoensemble.synthetic import write_scene
from tests.io.conftest import T30, UTM, data, ramp, write_tif

H, W = 24, 20


def _grid_coords(t: Affine, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return t.f + t.e * (np.arange(h) + 0.5), t.c + t.a * (np.arange(w) + 0.5)


# ------------------------------------------------------------------------------- NetCDF
def write_cf_netcdf(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A CF NetCDF (xarray + rioxarray): packed int16 'red', float 'nir', 3-D 'lst'."""
    import rioxarray  # noqa: F401

    red = ramp(H, W)
    red[0, 0] = red[5, 7] = -9999
    nir = ramp(H, W, "float32") / 10
    nir[3, :] = np.nan
    y, x = _grid_coords(T30, H, W)
    ds = xr.Dataset(
        {
            "red": (("y", "x"), red, {"long_name": "red reflectance", "units": "1"}),
            "nir": (("y", "x"), nir, {"long_name": "near infrared"}),
            "lst": (("time", "y", "x"), np.stack([nir, nir + 1]), {"long_name": "temperature"}),
        },
        coords={"y": y, "x": x, "time": [0, 1]},
    ).rio.write_crs(UTM)
    ds["red"].attrs.update(_FillValue=np.int16(-9999), scale_factor=0.5, add_offset=10.0)
    ds.to_netcdf(path, engine="netcdf4")
    return red, nir


def test_netcdf_variables_become_layers_with_values_grid_and_nan(tmp_path: Path) -> None:
    red, nir = write_cf_netcdf(tmp_path / "scene.nc")
    ds = build_stack(data(tmp_path / "scene.nc"))
    assert list(ds.data_vars) == ["red", "nir", "lst_1", "lst_2"]
    crs, t = grid_attrs(ds)
    assert same_crs(crs, CRS.from_string(UTM))
    assert np.allclose(t[:6], T30[:6])
    got = ds["red"].values
    assert np.isnan(got[0, 0]) and np.isnan(got[5, 7]) and int(np.isnan(got).sum()) == 2
    valid = red != -9999
    np.testing.assert_allclose(got[valid], red[valid] * 0.5 + 10.0)
    np.testing.assert_array_equal(ds["nir"].values, nir)  # NaN rows in place
    np.testing.assert_allclose(ds["lst_2"].values, nir + 1)


def test_netcdf_specs_pick_variables_by_name_and_metadata(tmp_path: Path) -> None:
    write_cf_netcdf(tmp_path / "scene.nc")
    cfg = data(
        tmp_path / "scene.nc",
        {"name": "infrared", "variable": "^nir$"},
        {"name": "temp_day2", "meta_key": "long_name", "meta_value": "^temp", "band": 2},
    )
    ds = build_stack(cfg)
    assert list(ds.data_vars) == ["infrared", "temp_day2"]
    assert float(ds["temp_day2"][1, 1]) == pytest.approx(float(ds["infrared"][1, 1]) + 1)


def test_bottom_up_latlon_netcdf_without_grid_mapping_is_flipped_to_north_up(
    tmp_path: Path,
) -> None:
    import netCDF4

    lat = 40.0 + 0.01 * (np.arange(H) + 0.5)  # increasing: the first row is the south edge
    lon = -106.0 + 0.01 * (np.arange(W) + 0.5)
    arr = ramp(H, W, "float32")
    arr[0, 2] = -1.0  # south-west corner area
    with netCDF4.Dataset(tmp_path / "ll.nc", "w") as nc:
        nc.createDimension("lat", H)
        nc.createDimension("lon", W)
        nc.createVariable("lat", "f8", ("lat",))[:] = lat
        nc.createVariable("lon", "f8", ("lon",))[:] = lon
        v = nc.createVariable("elev", "f4", ("lat", "lon"), fill_value=-1.0)
        v.set_auto_maskandscale(False)
        v[:] = arr
    ds = build_stack(data(tmp_path / "ll.nc"))
    crs, t = grid_attrs(ds)
    assert crs is not None and crs.to_epsg() == 4326
    assert t.e < 0 and t.f == pytest.approx(40.0 + 0.01 * H)
    got = ds["elev"].values
    np.testing.assert_array_equal(got[::-1][~np.isnan(got[::-1])], arr[arr != -1.0])
    assert np.isnan(got[H - 1, 2]) and int(np.isnan(got).sum()) == 1


def test_synthetic_scene_as_netcdf_round_trips_through_ingest(tmp_path: Path) -> None:
    write_scene(tmp_path / "raw", width=48, height=40, n_points=10)
    tif_stack = build_stack(data(tmp_path / "raw" / "scene", pattern="B*.TIF"))
    write_stack(tif_stack, tmp_path / "stack")
    open_store(tmp_path / "stack").to_netcdf(tmp_path / "scene.nc")
    nc_stack = build_stack(data(tmp_path / "scene.nc"))
    assert list(nc_stack.data_vars) == list(tif_stack.data_vars)
    for name in tif_stack.data_vars:
        np.testing.assert_array_equal(nc_stack[name].values, tif_stack[name].values)
    assert np.allclose(grid_attrs(nc_stack)[1][:6], grid_attrs(tif_stack)[1][:6])


# --------------------------------------------------------------------------------- HDF5
def write_hdf5(path: Path, *, georef: bool = True) -> np.ndarray:
    import h5py

    arr = ramp(H, W, "uint16")
    arr[2, 3] = 65535
    with h5py.File(path, "w") as f:
        if georef:
            f.attrs["crs_wkt"] = CRS.from_string(UTM).to_wkt()
            f.attrs["GeoTransform"] = np.array(T30.to_gdal())
        g = f.create_group("bands")
        d = g.create_dataset("red", data=arr, chunks=(8, 8))
        d.attrs["_FillValue"] = np.uint16(65535)
        d.attrs["scale_factor"] = 0.0001
        g.create_dataset("cube", data=np.stack([arr, arr * 0 + 7]).astype("int16"))
        f.create_dataset("notes", data=np.arange(5))  # 1-D: not a layer
    return arr


def test_hdf5_datasets_become_layers_with_values_grid_and_nan(tmp_path: Path) -> None:
    arr = write_hdf5(tmp_path / "prod.h5")
    ds = build_stack(data(tmp_path / "prod.h5", chunk_size=8))
    assert list(ds.data_vars) == ["cube_1", "cube_2", "red"]
    crs, t = grid_attrs(ds)
    assert same_crs(crs, CRS.from_string(UTM)) and np.allclose(t[:6], T30[:6])
    got = ds["red"].values
    assert np.isnan(got[2, 3]) and int(np.isnan(got).sum()) == 1
    ok = arr != 65535
    np.testing.assert_allclose(got[ok], arr[ok] * 0.0001, rtol=1e-6)
    assert np.all(ds["cube_2"].values == 7)


def test_hdf5_without_geolocation_uses_the_configured_transform(tmp_path: Path) -> None:
    write_hdf5(tmp_path / "bare.h5", georef=False)
    cfg = data(
        tmp_path / "bare.h5",
        {"name": "red", "variable": "/bands/red$"},
        crs="EPSG:32613",
        geotransform=list(T30.to_gdal()),
    )
    crs, t = grid_attrs(build_stack(cfg))
    assert crs is not None and crs.to_epsg() == 32613 and np.allclose(t[:6], T30[:6])


def test_hdf5_as_gdal_subdatasets(tmp_path: Path) -> None:
    arr = write_hdf5(tmp_path / "prod.h5")
    cfg = data(
        tmp_path / "prod.h5",
        {"name": "red", "variable": "bands/red$", "nodata": [65535]},
        format="gdal",
        crs=UTM,
        geotransform=list(T30.to_gdal()),
    )
    got = build_stack(cfg)["red"].values
    ok = arr != 65535
    np.testing.assert_array_equal(np.isnan(got), ~ok)
    np.testing.assert_allclose(got[ok], arr[ok] * 0.0001, rtol=1e-6)  # GDAL applies the scale


# --------------------------------------------------------------------------------- HDF4
STRUCT = """GROUP=GridStructure
\tGROUP=GRID_1
\t\tGridName="MOD_Grid_500m"
\t\tXDim={w}
\t\tYDim={h}
\t\tUpperLeftPointMtrs=(-7783653.637667,4447802.078667)
\t\tLowerRightMtrs=({lrx},{lry})
\t\tProjection=GCTP_SNSOID
\tEND_GROUP=GRID_1
END_GROUP=GridStructure
"""


def write_hdf4(path: Path, *, modis: bool = True) -> np.ndarray:
    from pyhdf.SD import SD, SDC

    refl = ramp(H, W, "int16") * 10
    refl[4, :] = -28672
    sd = SD(str(path), SDC.WRITE | SDC.CREATE)
    if modis:
        sd.attr("StructMetadata.0").set(
            SDC.CHAR8,
            STRUCT.format(
                w=W, h=H, lrx=-7783653.637667 + W * 463.3127, lry=4447802.078667 - H * 463.3127
            ),
        )
    v = sd.create("sur_refl_b01", SDC.INT16, (H, W))
    v[:] = refl
    v.setfillvalue(-28672)
    v.attr("scale_factor").set(SDC.FLOAT64, 0.0001)
    v.attr("add_offset").set(SDC.FLOAT64, 0.0)
    v.attr("long_name").set(SDC.CHAR8, "Surface_reflectance_for_band_1")
    v.endaccess()
    q = sd.create("QC_500m", SDC.UINT8, (H, W))
    q[:] = (np.arange(H * W).reshape(H, W) % 4).astype("uint8")
    q.endaccess()
    sd.end()
    return refl


def test_hdf4_modis_style_datasets_with_struct_metadata_geolocation(tmp_path: Path) -> None:
    refl = write_hdf4(tmp_path / "MOD09.hdf")
    cfg = data(
        tmp_path / "MOD09.hdf",
        {"name": "red", "meta_key": "long_name", "meta_value": "band_1$"},
        {"name": "qc", "variable": "^QC", "categorical": True},
    )
    ds = build_stack(cfg)
    assert list(ds.data_vars) == ["red", "qc"]
    crs, t = grid_attrs(ds)
    assert same_crs(crs, CRS.from_proj4(MODIS_SINUSOIDAL))
    assert t.c == pytest.approx(-7783653.637667) and t.a == pytest.approx(463.3127)
    assert t.f == pytest.approx(4447802.078667) and t.e == pytest.approx(-463.3127)
    got = ds["red"].values
    assert np.isnan(got[4]).all() and int(np.isnan(got).sum()) == W
    ok = refl != -28672
    np.testing.assert_allclose(got[ok], refl[ok] * 0.0001, rtol=1e-6)
    assert ds["qc"].attrs["categorical"] == 1 and float(ds["qc"][0, 3]) == 3.0


def test_hdf4_without_metadata_uses_the_configured_geolocation(tmp_path: Path) -> None:
    write_hdf4(tmp_path / "bare.hdf", modis=False)
    cfg = data(
        tmp_path / "bare.hdf",
        {"name": "red", "variable": "sur_refl_b01"},
        crs=UTM,
        geotransform=list(T30.to_gdal()),
    )
    crs, t = grid_attrs(build_stack(cfg))
    assert crs is not None and crs.to_epsg() == 32613 and np.allclose(t[:6], T30[:6])


# --------------------------------------------------------------------- GeoTiff + detection
def test_multiband_geotiff_bands_by_index_and_by_description(tmp_path: Path) -> None:
    arr = np.stack([ramp(H, W) % 200 + 1, ramp(H, W) % 50 + 100]).astype("uint8")
    write_tif(tmp_path / "rgb.tif", arr, nodata=0, descriptions=["red", "nir"])
    ds = build_stack(data(tmp_path / "rgb.tif"))
    assert list(ds.data_vars) == ["red", "nir"]
    cfg = data(
        tmp_path / "rgb.tif",
        {"name": "second", "band": 2},
        {"name": "first", "variable": "^red$"},
    )
    ds = build_stack(cfg)
    np.testing.assert_array_equal(ds["second"].values, arr[1].astype("float32"))
    np.testing.assert_array_equal(ds["first"].values, arr[0].astype("float32"))


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("a.tif", b"II*\x00", "geotiff"),
        ("a.nc", b"CDF\x01", "netcdf"),
        ("a.nc", b"\x89HDF\r\n\x1a\n", "netcdf"),
        ("a.h5", b"\x89HDF\r\n\x1a\n", "hdf5"),
        ("a.hdf", b"\x89HDF\r\n\x1a\n", "hdf5"),  # HDF-EOS5 files often end in .hdf too
        ("a.hdf", b"\x0e\x03\x13\x01", "hdf4"),
        ("a.dat", b"\x0e\x03\x13\x01", "hdf4"),
        ("a.img", b"\x00\x00", "gdal"),
    ],
)
def test_format_is_detected_from_extension_and_magic_bytes(
    tmp_path: Path, name: str, head: bytes, expected: str
) -> None:
    (tmp_path / name).write_bytes(head + b"\x00" * 16)
    assert detect_format(tmp_path / name) == expected
    assert detect_format(tmp_path, "auto") == "geotiff_dir"
    assert detect_format(tmp_path / name, "netcdf") == "netcdf"  # the config overrides


def test_folder_search_is_recursive_and_the_exact_name_wins(tmp_path: Path) -> None:
    for band in ("B1", "B10", "B11"):
        write_tif(tmp_path / "scene" / "sub" / f"{band}.TIF", ramp(8, 8, "uint16"))
    ds = build_stack(data(tmp_path / "scene", {"name": "B1"}, pattern="*.TIF"))
    assert list(ds.data_vars) == ["B1"]
    assert "B1.TIF" in ds["B1"].attrs["source"]
    assert rasterio.open(tmp_path / "scene" / "sub" / "B1.TIF").count == 1
