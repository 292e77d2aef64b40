"""STAC items, an item collection and an API search, served from a loopback Range server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoensemble.api.load import load_array
from geoensemble.errors import LayerNotFoundError
from geoensemble.io.stack import build_stack
from tests.io.conftest import T30, data
from tests.io.rangeserver import serve
from tests.io.test_products import LC09, QA, landsat_scene
from tests.io.test_remote import write_cog

BBOX = [-105.1, 40.3, -104.9, 40.5]


def item(item_id: str, when: str, assets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A STAC 1.0 item (relative or absolute asset hrefs) with eo:cloud_cover."""
    x0, y0 = T30.c, T30.f
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [
                    [BBOX[0], BBOX[1]],
                    [BBOX[2], BBOX[1]],
                    [BBOX[2], BBOX[3]],
                    [BBOX[0], BBOX[3]],
                    [BBOX[0], BBOX[1]],
                ]
            ],
        },
        "bbox": BBOX,
        "properties": {
            "datetime": when,
            "eo:cloud_cover": 12.5,
            "proj:epsg": 32613,
            "proj:transform": [30.0, 0.0, x0, 0.0, -30.0, y0],
        },
        "links": [],
        "assets": assets,
    }


def cog_asset(href: str, *roles: str) -> dict[str, Any]:
    return {
        "href": href,
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": list(roles or ["data"]),
    }


def landsat_item(root: Path) -> dict[str, Any]:
    """A Landsat C2 L2 item as USGS's STAC names its assets, hrefs relative to the item."""
    landsat_scene(root / "lc09")
    assets = {
        key: cog_asset(f"./lc09/{LC09}_{band}.TIF")
        for key, band in [("red", "SR_B4"), ("nir08", "SR_B5"), ("qa_pixel", "QA_PIXEL")]
    }
    assets["thumbnail"] = {"href": "./lc09/thumb.jpg", "type": "image/jpeg", "roles": ["thumbnail"]}
    assets["mtl.txt"] = {
        "href": f"./lc09/{LC09}_MTL.txt",
        "type": "text/plain",
        "roles": ["metadata"],
    }
    return item(LC09, "2023-07-15T17:40:00Z", assets)


def test_landsat_item_by_url_with_the_product_preset(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "item.json").write_text(json.dumps(landsat_item(www)))
    with serve(www) as srv:
        ds = build_stack(data(f"{srv.url}/item.json", product="landsat_c2_l2"))
        assert sorted(ds.data_vars) == ["SR_B4", "SR_B5"]
        red = ds["SR_B4"].values
        assert red[0, 0] == pytest.approx(0.075, abs=1e-6)  # DN 10000
        # QA_PIXEL: only the clear (0, 0) and the water (1, 0) pixels are kept
        np.testing.assert_array_equal(np.isnan(red), [[0, 1, 1, 1], [0, 1, 1, 1]])
        assert QA.shape == red.shape
        assert "asset red" in ds["SR_B4"].attrs["source"]
        tifs = srv.gets(".TIF")
        assert tifs and all(g.range for g in tifs)


def two_dates(www: Path, base: str) -> dict[str, Any]:
    """An item collection of two dates with red and nir COGs (absolute hrefs)."""
    rng = np.random.default_rng(1)
    feats = []
    for day in ("20230715", "20230731"):
        assets = {}
        for band in ("red", "nir"):
            arr = rng.integers(1, 10000, size=(512, 512), dtype="uint16")
            write_cog(www / day / f"{band}.tif", arr, nodata=0)
            assets[band] = cog_asset(f"{base}/{day}/{band}.tif")
        assets["overview"] = cog_asset(f"{base}/{day}/red.tif", "overview")
        feats.append(item(f"scene-{day}", f"{day[:4]}-{day[4:6]}-{day[6:]}T17:40:00Z", assets))
    return {"type": "FeatureCollection", "features": feats}


def test_item_collection_file_stacks_both_dates(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    with serve(www) as srv:
        collection = tmp_path / "items.json"
        collection.write_text(json.dumps(two_dates(www, srv.url)))
        ds = load_array(str(collection), chunks=256)
        assert list(ds.data_vars) == [
            "red_20230715",
            "nir_20230715",
            "red_20230731",
            "nir_20230731",
        ]
        for day in ("20230715", "20230731"):
            local = build_stack(data(www / day, chunk_size=256))
            for band in ("red", "nir"):
                np.testing.assert_array_equal(ds[f"{band}_{day}"].values, local[band].values)
        assert all(g.range for g in srv.gets(".tif"))
        with pytest.raises(LayerNotFoundError, match="2 items"):
            load_array(str(collection), product="landsat_c2_l2")


def test_stac_api_search(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "api").mkdir(parents=True)
    with serve(www) as srv:
        landing = {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "loopback",
            "description": "t",
            "conformsTo": [
                "https://api.stacspec.org/v1.0.0/core",
                "https://api.stacspec.org/v1.0.0/item-search",
                "https://api.stacspec.org/v1.0.0/item-search#query",
            ],
            "links": [
                {
                    "rel": "search",
                    "href": f"{srv.url}/api/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
                {"rel": "self", "href": f"{srv.url}/api/"},
            ],
        }
        (www / "api" / "index.json").write_text(json.dumps(landing))
        found = two_dates(www, srv.url)
        found["features"] = found["features"][:1]
        (www / "api" / "search").write_text(json.dumps(found))
        ds = load_array(
            f"{srv.url}/api/index.json",
            format="stac_api",
            stac={
                "collections": ["two-dates"],
                "bbox": BBOX,
                "datetime": "2023-07-01/2023-07-20",
                "max_cloud": 20,
                "limit": 1,
            },
        )
        assert list(ds.data_vars) == ["red", "nir"]
        local = build_stack(data(www / "20230715", chunk_size=256))
        np.testing.assert_array_equal(ds["red"].values, local["red"].values)
        body = json.loads(srv.posted[0])
        assert body["collections"] == ["two-dates"] and body["bbox"] == BBOX
        assert body["query"] == {"eo:cloud_cover": {"lte": 20.0}}
        assert body["datetime"].startswith("2023-07-01")


@pytest.mark.parametrize(
    ("path", "kw", "match"),
    [
        ("api.json", {"format": "stac_api"}, "path='api.json' is invalid: use the STAC API"),
        ("https://h/api", {"format": "stac_api", "stac": {"limit": 0}}, r"^stac\.limit=0 is"),
        ("https://h/api", {"format": "stac_api", "stac": {"max_cloud": 120}}, "max_cloud=120"),
        ("https://h/api", {"format": "stac_api", "stac": {"bbox": [1, 2, 0, 3]}}, "stac.bbox"),
        ("https://h/api", {"format": "stac_api", "stac": {"cloud": 3}}, "unknown key"),
    ],
)
def test_bad_stac_settings(path: str, kw: dict[str, Any], match: str) -> None:
    from geoensemble.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        load_array(path, **kw)


def test_unreadable_asset_url_is_named_without_its_password(tmp_path: Path) -> None:
    from geoensemble.errors import InputFileError

    www = tmp_path / "www"
    www.mkdir()
    doc = item("x", "2023-07-15T00:00:00Z", {"red": cog_asset("missing.tif")})
    with serve(www) as srv:
        doc["links"] = [
            {"rel": "self", "href": srv.url.replace("//", "//bob:hunter2@") + "/x.json"}
        ]
        (www / "x.json").write_text(json.dumps(doc))
        with pytest.raises(InputFileError, match=r"bob:\*\*\*@.*missing.tif.*404") as err:
            load_array(f"{srv.url}/x.json")
    assert "hunter2" not in str(err.value)
