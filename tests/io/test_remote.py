"""COGs read by URL from a real HTTP server on loopback that honours Range requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoensemble.api.load import load_array
from geoensemble.io.remote import CLOUD_OPTIONS, cloud_env, url_name, vsi_path
from geoensemble.io.stack import build_stack
from tests.io.conftest import T30, UTM, data
from tests.io.rangeserver import serve
from tests.io.test_products import LC09, landsat_scene

SIZE = 1024  # 16 tiles of 256 x 256 per COG


def write_cog(path: Path, arr: np.ndarray, *, nodata: float | None = None) -> Path:
    """A Cloud-Optimized GeoTiff (GDAL's COG driver: tiles, overviews, header first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype=arr.dtype,
        crs=UTM,
        transform=T30,
        nodata=nodata,
        BLOCKSIZE=256,
        COMPRESS="DEFLATE",
    ) as dst:
        dst.write(arr, 1)
    return path


@pytest.fixture
def cogs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "www"
    for name in ("red", "nir"):
        arr = rng.integers(1, 10000, size=(SIZE, SIZE), dtype="uint16")
        arr[:3, :3] = 0
        write_cog(root / "scene" / f"{name}.tif", arr, nodata=0)
    return root


def test_stack_by_url_equals_local_and_reads_by_range(cogs: Path) -> None:
    local = build_stack(data(cogs / "scene", chunk_size=256))
    with serve(cogs) as srv:
        urls = [f"{srv.url}/scene/red.tif", f"{srv.url}/scene/nir.tif"]
        remote = load_array(urls, chunks=256)
        assert list(remote.data_vars) == ["red", "nir"]
        # one 256 x 256 window: a few range requests, not the whole file
        window = remote["red"][256:512, 512:768].values
        np.testing.assert_array_equal(window, local["red"][256:512, 512:768].values)
        gets = srv.gets("red.tif")
        assert gets and all(g.range and g.range.startswith("bytes=") for g in gets)
        assert all(g.status == 206 for g in gets)
        size = (cogs / "scene" / "red.tif").stat().st_size
        assert sum(g.sent for g in gets) < size / 2
        # the whole stack, still by ranges only
        for name in ("red", "nir"):
            np.testing.assert_array_equal(remote[name].values, local[name].values)
        assert all(g.range for g in srv.gets())
        assert np.isnan(remote["red"].values[:3, :3]).all()


def test_listing_file_and_product_preset_by_url(tmp_path: Path) -> None:
    www = tmp_path / "www"
    landsat_scene(www / "lc09")
    with serve(www) as srv:
        listing = tmp_path / "scene.txt"
        names = sorted(p.name for p in (www / "lc09").glob("*.TIF"))
        listing.write_text(
            "# Landsat 9 C2 L2 over HTTP\n" + "".join(f"{srv.url}/lc09/{n}\n" for n in names)
        )
        ds = build_stack(data(listing, product="landsat_c2_l2"))
        assert ds["SR_B4"].values[0, 0] == pytest.approx(0.075, abs=1e-6)
        assert np.isnan(ds["SR_B4"].values[0, 1])  # QA_PIXEL cloud bit
        assert ds["SR_B4"].attrs["source"].endswith(f"{LC09}_SR_B4.TIF")
        assert all(g.range for g in srv.gets())


def test_credentials_in_a_url_never_reach_labels(cogs: Path) -> None:
    with serve(cogs) as srv:
        url = srv.url.replace("http://", "http://alice:s3cret@") + "/scene/red.tif"
        ds = load_array(url)
        assert "s3cret" not in ds["band_1"].attrs["source"]
        assert "alice:***@" in ds["band_1"].attrs["source"]
        assert float(ds["band_1"][5, 5]) > 0


def test_paths_and_scoped_settings() -> None:
    assert vsi_path("https://h/x/B4.TIF") == "/vsicurl/https://h/x/B4.TIF"
    assert vsi_path("s3://bucket/a/B4.TIF") == "/vsis3/bucket/a/B4.TIF"
    assert url_name("https://h/x/B4.TIF?sig=abc") == "B4.TIF"
    with cloud_env("/vsicurl/https://h/x.tif"):
        assert rasterio.env.getenv()["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert "GDAL_HTTP_MULTIRANGE" in CLOUD_OPTIONS
    assert not rasterio.env.hasenv()  # scoped: nothing left set once the block ends
    with cloud_env("/tmp/local.tif"):
        assert not rasterio.env.hasenv()  # local files: GDAL's defaults


def test_s3_endpoint_by_vsis3(cogs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/vsis3/ against moto's S3-compatible server on loopback (credentials from the
    environment only: fake ones, set for this test and restored by monkeypatch)."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_S3_ENDPOINT": f"{host}:{port}",
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
        }.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="scenes")
        for name in ("red", "nir"):
            s3.upload_file(str(cogs / "scene" / f"{name}.tif"), "scenes", f"lc/{name}.tif")
        remote = load_array(["s3://scenes/lc/red.tif", "s3://scenes/lc/nir.tif"], chunks=256)
        local = build_stack(data(cogs / "scene", chunk_size=256))
        for name in ("red", "nir"):
            np.testing.assert_array_equal(remote[name].values, local[name].values)
        assert remote["red"].attrs["source"] == "s3://scenes/lc/red.tif"
    finally:
        server.stop()


@pytest.mark.integration
def test_ingest_stage_reads_a_url_listing_and_records_no_password(tmp_path: Path) -> None:
    """The pipeline's ingest stage (a real subprocess) on a listing of URLs with
    user:password@: the stack and report equal the product's values; no password written."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    www = tmp_path / "www"
    landsat_scene(www / "lc09")
    with serve(www) as srv:
        listing = tmp_path / "scene.txt"
        base = srv.url.replace("http://", "http://bob:hunter2@")
        names = sorted(p.name for p in (www / "lc09").glob("*.TIF"))
        listing.write_text("".join(f"{base}/lc09/{n}\n" for n in names))
        out = tmp_path / "out"
        done = subprocess.run(
            [
                sys.executable,
                str(root / "pipelines" / "ingest.py"),
                f"data.path={listing}",
                "data.product=landsat_c2_l2",
                f"paths.stack={out}/stack",
                f"paths.reports={out}/reports",
                "data.truth=null",
                "data.labels.path=null",
                f"hydra.run.dir={tmp_path}/hydra",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(root / "src")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert all(g.range for g in srv.gets(".TIF"))
    report = json.loads((out / "reports" / "ingest.json").read_text())
    assert report["format"] == "url"
    assert report["layers"]["SR_B4"]["min"] == pytest.approx(0.075, abs=1e-6)
    assert report["layers"]["SR_B4"]["valid_fraction"] == pytest.approx(0.25)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and not [p for p in written if b"hunter2" in p.read_bytes()]
    assert "hunter2" not in done.stdout + done.stderr
