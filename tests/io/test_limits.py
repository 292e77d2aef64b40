"""Every size a limit, checked before work starts (issue 21): a raster header declaring
10^6 x 10^6 px, a complex band, an oversized sidecar, member and cluster counts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.errors import ConfigError, InputFileError
from geoensemble.io.labels import load_labels
from geoensemble.io.limits import MAX_SIDECAR_BYTES, read_json
from geoensemble.io.stack import build_stack
from tests.conftest import ROOT
from tests.io.conftest import T30, UTM, data, ramp, write_tif
from tests.test_bad_inputs_cli import outputs_in, stage, the_error_line


def sparse_huge(path: Path) -> Path:
    """A real GeoTiff whose header declares 10^6 x 10^6 px in 0.7 MB (sparse, no tile written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10**6,
        height=10**6,
        count=1,
        dtype="uint8",
        crs=UTM,
        transform=T30,
        tiled=True,
        blockxsize=4096,
        blockysize=4096,
        sparse_ok=True,
        BIGTIFF="YES",
    ):
        pass
    return path


def test_a_header_declaring_a_terapixel_stops_ingest_in_one_line(tmp_path: Path) -> None:
    sparse_huge(tmp_path / "scene" / "huge.tif")
    proc = stage(
        "ingest",
        f"data.path={tmp_path}/scene",
        "data.pattern=*.tif",
        "data.layers=[]",
        f"paths.stack={tmp_path}/stack",
        f"paths.reports={tmp_path}/reports",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "ingest")
    assert re.search(
        r"huge\.tif declares 1000000 x 1000000 px \(1,000,000 Mpx\), over the limit of "
        r"2,000 Mpx per layer: .*raise limits\.max_pixels",
        line,
    ), line
    assert not (tmp_path / "stack").exists()
    assert [p.name for p in outputs_in(tmp_path)] == ["huge.tif"]


def test_the_pixel_limit_is_the_callers_to_raise(tmp_path: Path) -> None:
    write_tif(tmp_path / "a.tif", ramp(24, 20))
    with pytest.raises(InputFileError, match=r"declares 20 x 24 px .* limit of 0 Mpx"):
        build_stack(data(tmp_path), max_pixels=479)
    assert build_stack(data(tmp_path), max_pixels=480)["a"].shape == (24, 20)


def test_a_complex_band_is_refused_not_cast(tmp_path: Path) -> None:
    arr = (ramp(8, 6).astype(np.float32) + 1j * np.ones((8, 6), np.float32)).astype(np.complex64)
    write_tif(tmp_path / "slc.tif", arr)
    with pytest.raises(InputFileError, match=r"slc\.tif holds complex values \(complex64\)"):
        build_stack(data(tmp_path))


def test_an_oversized_sidecar_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    js = labels / "classes.json"
    with js.open("w") as f:  # a valid JSON object of 17 MB
        f.write('{"target": "classes", "classes": {"1": "water"}, "pad": "')
        f.write("x" * MAX_SIDECAR_BYTES)
        f.write('"}')
    with pytest.raises(InputFileError, match=r"classes\.json is 16\.0 MB, over the 16 MB"):
        load_labels(labels)
    js.write_text(json.dumps({"target": None}))
    assert read_json(js) == {"target": None}


def configured(*overrides: str) -> object:
    return validate(compose(list(overrides), config_dir=ROOT / "conf"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            ["ensemble.size=10000", "model.space={}"],
            r"ensemble\.size=10000 x ensemble\.generations=2 is 20000 members, over the limit "
            r"limits\.max_members=500",
        ),
        (
            ["model.n_clusters=20000", "model.space={}"],
            r"model\.n_clusters=20000 is over the limit limits\.max_clusters=1000",
        ),
        (
            ["model.space.n_clusters=[4,5000]"],
            r"model\.space\.n_clusters=5000 is over the limit limits\.max_clusters=1000",
        ),
    ],
    ids=["members", "clusters", "searched-clusters"],
)
def test_member_and_cluster_counts_have_limits(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        configured(*overrides)


def test_the_count_limits_can_be_raised() -> None:
    cfg = configured(
        "ensemble.size=600",
        "limits.max_members=1200",
        "model.n_clusters=1200",
        "model.space={}",
        "limits.max_clusters=1200",
    )
    assert cfg.ensemble.size == 600 and cfg.model.n_clusters == 1200  # type: ignore[attr-defined]


def test_load_array_takes_the_pixel_limit_its_message_names(tmp_path: Path) -> None:
    from geoensemble import load_array

    write_tif(tmp_path / "a.tif", ramp(24, 20))
    with pytest.raises(InputFileError, match=r"declares 20 x 24 px .*raise max_pixels"):
        load_array(tmp_path / "a.tif", max_pixels=479)
    assert load_array(tmp_path / "a.tif", max_pixels=480)["band_1"].shape == (24, 20)
