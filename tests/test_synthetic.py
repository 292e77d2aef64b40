"""The embedded default scene: determinism, geo-referencing, footprint, separability."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from geoensemble.classes import SCENE_CLASSES
from geoensemble.synthetic import BANDS, NODATA, footprint, make_scene, write_scene


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, b = make_scene(96, 80, seed=3), make_scene(96, 80, seed=3)
    c = make_scene(96, 80, seed=4)
    np.testing.assert_array_equal(a.bands, b.bands)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.bands, c.bands)


def test_written_scene_has_real_crs_transform_and_nodata_border(tmp_path) -> None:
    out = write_scene(tmp_path, width=120, height=100, seed=1, n_points=60)
    assert sorted(p.name for p in out["scene"].iterdir()) == [f"{b}.TIF" for b in BANDS]
    with rasterio.open(out["scene"] / "B5.TIF") as src:
        assert src.crs.to_epsg() == 32613
        assert src.transform.a == 30.0 and src.transform.e == -30.0
        assert src.nodata == NODATA and src.dtypes[0] == "uint16"
        arr = src.read(1)
    # Corners lie outside the tilted footprint; the centre inside.
    for r, c in [(0, 0), (0, 119), (99, 0), (99, 119)]:
        assert arr[r, c] == NODATA
    assert arr[50, 60] != NODATA
    valid = footprint(100, 120)
    assert (arr[~valid] == NODATA).all() and (arr[valid] != NODATA).all()
    with rasterio.open(out["truth"]) as src:
        truth = src.read(1)
        assert src.nodata == 255
    assert set(np.unique(truth[valid])) <= set(SCENE_CLASSES)
    assert (truth[~valid] == 255).all()
    fc = json.loads(out["points"].read_text())
    assert len(fc["features"]) > 0
    for f in fc["features"][:20]:
        x, y = f["geometry"]["coordinates"]
        col, row = ~src.transform @ (x, y)
        assert truth[int(row), int(col)] == f["properties"]["class"]


def test_indices_separate_the_classes() -> None:
    s = make_scene(200, 200, seed=7)
    refl = s.bands.astype(np.float64) / 10_000
    _, _blue, green, red, nir, swir1, swir2 = refl
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
        ndwi = (green - nir) / (green + nir)
        ndsi = (green - swir1) / (green + swir1)
        nbr = (nir - swir2) / (nir + swir2)
    med = {
        name: {
            k: float(np.median(v[s.truth == code]))
            for k, v in {"ndvi": ndvi, "ndwi": ndwi, "ndsi": ndsi, "nbr": nbr}.items()
        }
        for code, (name, _) in SCENE_CLASSES.items()
    }
    assert (
        med["water"]["ndwi"]
        > 0.3
        > max(m["ndwi"] for k, m in med.items() if k not in {"water", "snow"})
    )
    assert med["forest"]["ndvi"] > 0.75 > med["cropland"]["ndvi"] > 0.5
    assert med["snow"]["ndsi"] > 0.8 and med["water"]["ndsi"] > 0.5
    assert max(med[k]["ndsi"] for k in ("forest", "cropland", "bare_soil", "built_up")) < 0
    assert max(med["bare_soil"]["ndvi"], med["built_up"]["ndvi"]) < 0.3 < med["cropland"]["ndvi"]
    assert (
        med["forest"]["nbr"]
        > med["cropland"]["nbr"]
        > med["built_up"]["nbr"]
        > med["bare_soil"]["nbr"]
    )
