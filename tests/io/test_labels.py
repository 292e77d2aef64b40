"""Labels from real GeoJSON/GeoPackage/Shapefile/GeoTiff files onto a grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import Point, box

from geoensemble.errors import ConfigError, EmptyLayerError, GridMismatchError, InputFileError
from geoensemble.io.geotiff import write_geotiff
from geoensemble.io.grid import Grid
from geoensemble.io.labels import (
    NODATA,
    load_labels,
    read_labels,
    write_labels,
    write_no_labels,
)

CRS_UTM = CRS.from_epsg(32613)
X0, Y0, RES = 500_000.0, 4_500_000.0, 30.0
GRID = Grid(CRS_UTM, from_origin(X0, Y0, RES, RES), (40, 50))


def centre(row: int, col: int) -> tuple[float, float]:
    return X0 + (col + 0.5) * RES, Y0 - (row + 0.5) * RES


def points_file(tmp_path: Path, name: str = "points.geojson", crs: str = "EPSG:32613") -> Path:
    pts = [((3, 4), "water", 0, 1.5), ((10, 20), "forest", 1, 7.0), ((30, 45), "water", 0, 2.5)]
    gdf = gpd.GeoDataFrame(
        {
            "class_name": [p[1] for p in pts],
            "class": [p[2] for p in pts],
            "height": [p[3] for p in pts],
        },
        geometry=[Point(*centre(*p[0])) for p in pts],
        crs="EPSG:32613",
    ).to_crs(crs)
    path = tmp_path / name
    gdf.to_file(path, engine="pyogrio")
    return path


def test_points_are_rasterized_with_sorted_name_codes(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path), GRID)
    assert lab.classes == {0: "forest", 1: "water"}
    assert lab.array.dtype == np.uint8 and lab.array.shape == (40, 50)
    assert lab.array[3, 4] == 1 and lab.array[30, 45] == 1 and lab.array[10, 20] == 0
    assert int(lab.mask.sum()) == 3 and (lab.array[~lab.mask] == NODATA).all()
    assert lab.counts() == {"forest": 1, "water": 2}


def test_points_in_another_crs_are_reprojected(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path, "wgs84.geojson", crs="EPSG:4326"), GRID)
    assert lab.array[3, 4] == 1 and lab.array[10, 20] == 0


def test_code_attribute_keeps_the_files_codes(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path), GRID, code_attribute="class")
    assert lab.classes == {0: "water", 1: "forest"}
    assert lab.array[3, 4] == 0 and lab.array[10, 20] == 1


def test_buffered_points_label_a_disc(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path), GRID, buffer=31.0)
    assert lab.mask[2:5, 3:6].sum() == 5  # centre + 4 neighbours (diagonals are 42 m away)


def test_polygons_from_a_geopackage_layer_and_a_shapefile(tmp_path: Path) -> None:
    polys = gpd.GeoDataFrame(
        {"lc": ["crop", "urban"]},
        geometry=[
            box(X0, Y0 - 10 * RES, X0 + 10 * RES, Y0),  # rows 0-9, cols 0-9
            box(X0 + 20 * RES, Y0 - 5 * RES, X0 + 25 * RES, Y0),  # rows 0-4, cols 20-24
        ],
        crs="EPSG:32613",
    )
    gpkg = tmp_path / "labels.gpkg"
    polys.to_file(gpkg, layer="training", engine="pyogrio")
    lab = read_labels(gpkg, GRID, attribute="lc", layer="training")
    assert lab.counts() == {"crop": 100, "urban": 25}
    shp = tmp_path / "labels.shp"
    polys.to_file(shp, engine="pyogrio")
    assert read_labels(shp, GRID, attribute="lc").counts() == {"crop": 100, "urban": 25}


def test_values_for_regression(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path), GRID, attribute="height", target="value")
    assert lab.array.dtype == np.float32
    assert lab.array[10, 20] == pytest.approx(7.0) and np.isnan(lab.array[0, 0])
    assert lab.counts() == {"labelled": 3}


def test_label_raster_on_and_off_the_grid(tmp_path: Path) -> None:
    arr = np.full((40, 50), 255, np.uint8)
    arr[5:10, 5:10] = 2
    arr[20:30, 0:10] = 4
    on = write_geotiff(
        tmp_path / "on.tif",
        arr,
        crs=CRS_UTM,
        transform=GRID.transform,
        nodata=255,
        tags={"CLASS_2": "crop", "CLASS_4": "snow"},
    )
    lab = read_labels(on, GRID)
    assert np.array_equal(lab.array, arr)
    assert lab.classes == {2: "crop", 4: "snow"}
    # Same classes at 15 m: resampled by nearest neighbour onto the 30 m grid.
    fine = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
    off = write_geotiff(
        tmp_path / "fine.tif", fine, crs=CRS_UTM, transform=from_origin(X0, Y0, 15, 15), nodata=255
    )
    assert np.array_equal(read_labels(off, GRID).array, arr)


RAT_AUX = """<PAMDataset>
  <PAMRasterBand band="1">
    <GDALRasterAttributeTable tableType="thematic">
      <FieldDefn index="0"><Name>Value</Name><Type>0</Type><Usage>5</Usage></FieldDefn>
      <FieldDefn index="1"><Name>Count</Name><Type>0</Type><Usage>1</Usage></FieldDefn>
      <FieldDefn index="2"><Name>Class_Name</Name><Type>2</Type><Usage>2</Usage></FieldDefn>
      <Row index="0"><F>2</F><F>25</F><F>Cultivated Crops</F></Row>
      <Row index="1"><F>4</F><F>100</F><F>Perennial Ice/Snow</F></Row>
    </GDALRasterAttributeTable>
  </PAMRasterBand>
</PAMDataset>
"""


@pytest.mark.parametrize("table", ["category_names", "attribute_table"])
def test_label_raster_class_table_names_the_classes(tmp_path: Path, table: str) -> None:
    from geoensemble.classes import class_colour
    from geoensemble.io.geotiff import write_category_names

    arr = np.full((40, 50), 255, np.uint8)
    arr[5:10, 5:10] = 2
    arr[20:30, 0:10] = 4
    tif = write_geotiff(tmp_path / "lc.tif", arr, crs=CRS_UTM, transform=GRID.transform, nodata=255)
    if table == "category_names":  # as GDAL writes them for a GeoTiff: in the .aux.xml
        write_category_names(tif, {0: "", 2: "Cultivated Crops", 4: "Perennial Ice/Snow"})
    else:
        Path(f"{tif}.aux.xml").write_text(RAT_AUX)
    lab = read_labels(tif, GRID)
    assert lab.classes == {2: "Cultivated Crops", 4: "Perennial Ice/Snow"}
    paths = write_labels(lab, tmp_path / "out", GRID)
    assert json.loads(paths["classes"].read_text())["classes"] == {
        "2": "Cultivated Crops",
        "4": "Perennial Ice/Snow",
    }
    with rasterio.open(paths["labels"]) as src:
        cmap = src.colormap(1)
        assert src.tags()["CLASS_4"] == "Perennial Ice/Snow"
    assert cmap[2][:3] == class_colour("cropland") and cmap[4][:3] == class_colour("snow")


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    lab = read_labels(points_file(tmp_path), GRID, code_attribute="class")
    paths = write_labels(lab, tmp_path / "out", GRID)
    meta = json.loads(paths["classes"].read_text())
    assert meta["classes"] == {"0": "water", "1": "forest"}
    assert meta["counts"] == {"water": 2, "forest": 1} and meta["labelled_pixels"] == 3
    with rasterio.open(paths["labels"]) as src:
        assert src.crs == CRS_UTM and src.transform == GRID.transform and src.nodata == 255
    back = load_labels(tmp_path / "out")
    assert back is not None and np.array_equal(back.array, lab.array)
    assert back.classes == lab.classes
    write_no_labels(tmp_path / "none")
    assert load_labels(tmp_path / "none") is None


@pytest.fixture
def label_files(tmp_path: Path) -> dict[str, Path]:
    """Good points plus files that are wrong in one way each."""
    bad_codes = tmp_path / "bad_codes.geojson"
    gpd.GeoDataFrame(
        {"class_name": ["a", "b"], "class": [1, 1]},
        geometry=[Point(*centre(1, 1)), Point(*centre(2, 2))],
        crs="EPSG:32613",
    ).to_file(bad_codes, engine="pyogrio")
    far = tmp_path / "far.geojson"
    gpd.GeoDataFrame({"class_name": ["a"]}, geometry=[Point(0, 0)], crs="EPSG:32613").to_file(
        far, engine="pyogrio"
    )
    broken = tmp_path / "broken.gpkg"
    broken.write_text("not a geopackage")
    return {
        "points": points_file(tmp_path),
        "bad_codes": bad_codes,
        "far": far,
        "broken": broken,
        "missing": tmp_path / "nope.gpkg",
    }


@pytest.mark.parametrize(
    ("file", "kwargs", "exc", "match"),
    [
        ("missing", {}, InputFileError, r"nope\.gpkg does not exist"),
        ("broken", {}, InputFileError, r"cannot read label file .*broken\.gpkg"),
        ("points", {"attribute": "klass"}, ConfigError, r"attribute='klass'.*class_name"),
        ("points", {"code_attribute": "cls"}, ConfigError, r"code_attribute='cls'"),
        ("bad_codes", {"code_attribute": "class"}, ConfigError, r"code 1 .* more than one"),
        ("points", {"target": "value"}, ConfigError, r"class_name'.* not numeric"),
        ("points", {"target": "probability"}, ConfigError, r"target='probability'"),
        ("far", {}, EmptyLayerError, r"no label of .*far\.geojson falls on"),
    ],
)
def test_bad_label_inputs_name_the_file_and_key(
    label_files: dict[str, Path],
    file: str,
    kwargs: dict[str, Any],
    exc: type[Exception],
    match: str,
) -> None:
    with pytest.raises(exc, match=match):
        read_labels(label_files[file], GRID, **kwargs)


def test_label_raster_without_crs_off_grid_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "nocrs.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="uint8",
        transform=from_origin(0, 10, 1, 1),
    ) as dst:
        dst.write(np.zeros((1, 10, 10), np.uint8))
    with pytest.raises(GridMismatchError, match=r"nocrs\.tif is not on the features' grid"):
        read_labels(p, GRID)
