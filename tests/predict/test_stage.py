"""The predict stage end to end: real Zarr features, a real SQLite MLflow store, COG maps
with provenance, quicklooks, the predict run, overwrite rules, ensembles, other scenes."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from geoensemble.app.config import DataConfig, TrackingConfig
from geoensemble.errors import OutputError
from geoensemble.io.stack import write_store
from geoensemble.predict.timing import LOG_PREFIX
from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, register, valid_table

H, W = 620, 700  # > 512: tiled COG with an overview


@pytest.fixture
def project(tmp_path: Path, store: TrackingConfig) -> Path:
    write_store(make_scene(H, W, chunks=256), tmp_path / "features", meta={"feature_names": NAMES})
    return tmp_path


def test_predict_stage_writes_a_cog_with_provenance_and_a_predict_run(
    project: Path, make_cfg, store: TrackingConfig
) -> None:
    est = fit_kmeans(NAMES, 6)
    register(store, [est], NAMES)
    cfg = make_cfg("predict.block_size=512")
    out = stages.predict(cfg)
    path = project / "maps" / "synthetic_geoensemble_champion.tif"
    assert out["path"] == str(path)
    ds = make_scene(H, W)
    X, mask = valid_table(ds, NAMES)
    with rasterio.open(path) as src:
        got = src.read(1)
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["compress"] == "lzw" and src.block_shapes[0] == (512, 512)
        assert src.overviews(1) == [2]
        assert (src.width, src.height, src.crs.to_epsg()) == (W, H, 32613)
        tags = src.tags()
    np.testing.assert_array_equal(got[mask], est.predict(X))
    assert (got[~mask] == 255).all()
    assert tags["predict_run_id"] == out["run_id"] and tags["model_version"] == "1"
    assert tags["model_uri"] == "models:/geoensemble@champion" and tags["member_run_ids"]
    assert re.fullmatch(r"[0-9a-f]{64}", tags["config_sha256"])
    assert json.loads(tags["dvc_inputs"]) == {}  # no dvc.lock knows these features
    assert path.with_suffix(".png").stat().st_size > 1000
    run = mlflow.MlflowClient().get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["geoensemble.role"] == "predict"
    m = run.data.metrics
    assert m["pixels"] == H * W and m["valid_pixels"] == mask.sum()
    assert sum(v for k, v in m.items() if k.startswith("class_")) == mask.sum()
    assert len(run.inputs.model_inputs) == 1

    with pytest.raises(OutputError, match=r"already exist outside DVC-managed.*overwrite=true"):
        stages.predict(cfg)
    stages.predict(make_cfg("predict.block_size=512", "predict.overwrite=true"))


def test_ensemble_members_vote_agreement_and_probabilities(
    project: Path, make_cfg, store: TrackingConfig
) -> None:
    ests = [fit_forest(NAMES, seed) for seed in (0, 1, 2)]
    register(store, ests, NAMES)
    out = stages.predict(make_cfg("predict=ensemble", "predict.progress=false"))
    maps = {k: Path(v) for k, v in out["scenes"]["synthetic"]["maps"].items()}
    assert sorted(p.name for p in maps.values()) == sorted(
        ["synthetic_geoensemble_champion.tif"]
        + [f"synthetic_geoensemble_rank{i}.tif" for i in (2, 3)]
        + [
            f"synthetic_geoensemble_ensemble_{k}.tif"
            for k in ("vote", "agreement", "probabilities", "max_probability", "vote_regularised")
        ]
    )
    X, mask = valid_table(make_scene(H, W), NAMES)
    preds = np.stack([e.predict(X) for e in ests])
    with rasterio.open(maps["vote"]) as v, rasterio.open(maps["agreement"]) as a:
        vote, agree = v.read(1)[mask], a.read(1)[mask]
    # the agreement map has a quicklook of its own, on a fixed 0-100 % scale
    assert maps["agreement"].with_suffix(".png").stat().st_size > 1000
    # ... and a continuous QGIS style on the same scale (QGIS shows the scaled 0-1 values)
    import xml.etree.ElementTree as ET

    style = ET.parse(maps["agreement"].with_suffix(".qml")).getroot()
    renderer = style.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "singlebandpseudocolor"
    ramp = [(i.get("value"), i.get("label"), i.get("color")) for i in style.iter("item")]
    assert ramp[0] == ("0", "0 %", "#000004") and ramp[-1] == ("1", "100 %", "#fcfdbf")
    assert [v for v, _, _ in ramp] == ["0", "0.25", "0.5", "0.75", "1"]
    with rasterio.open(maps["agreement"]) as a:
        assert a.scales == (0.01,)
    unanimous = (preds == preds[0]).all(axis=0)
    np.testing.assert_array_equal(agree[unanimous], 100)
    np.testing.assert_array_equal(vote[unanimous], preds[0][unanimous])
    assert set(np.unique(agree)) <= {33, 67, 100}
    with rasterio.open(maps["probabilities"]) as p:
        probs = p.read()[:, mask]
    mean = np.mean([e.predict_proba(X) for e in ests], axis=0)
    np.testing.assert_array_equal(probs.T, np.rint(100 * mean).astype(np.uint8))


def test_another_scene_is_ingested_and_featurized_in_memory(
    tmp_path: Path, make_cfg, store: TrackingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from geoensemble.app.settings import read_spec_of, recipe_of
    from geoensemble.features.build import build_features
    from geoensemble.io.stack import build_stack
    from geoensemble.synthetic import write_scene

    cfg = make_cfg("predict.scheduler=distributed")
    write_scene(tmp_path / "other", width=300, height=260, seed=7)
    scene = DataConfig(name="other", format="geotiff_dir", path=str(tmp_path / "other/scene"))
    scene.pattern = "B*.TIF"
    feats = build_features(build_stack(read_spec_of(scene)), recipe_of(cfg.features))
    names = list(map(str, feats.data_vars))
    X, mask = valid_table(feats, names)
    from sklearn.cluster import KMeans

    est = KMeans(4, n_init=1, random_state=0).fit(X[::7])
    register(store, [est], names)
    cfg.predict.scenes = [scene]
    caplog.set_level(logging.INFO, logger="geoensemble")
    out = stages.predict(cfg)
    with rasterio.open(out["scenes"]["other"]["maps"]["member:0"]) as src:
        got = src.read(1)
    np.testing.assert_array_equal(got[mask], est.predict(X))
    assert (got[~mask] == 255).all()
    # the blocks' reading and predicting, timed on the dask workers that ran them
    [line] = [r.getMessage() for r in caplog.records if LOG_PREFIX in r.getMessage()]
    phases = json.loads(line.split(LOG_PREFIX, 1)[1])
    assert phases["read"] > 0 and phases["predict"] > 0


def test_other_scenes_are_read_in_chunks_of_the_block_edge(make_cfg, tmp_path: Path) -> None:
    from geoensemble.app.predict import scene_sources
    from geoensemble.synthetic import write_scene

    write_scene(tmp_path / "big", width=1100, height=700, seed=3)
    scene = DataConfig(name="big", format="geotiff_dir", path=str(tmp_path / "big/scene"))
    scene.pattern, scene.chunk_size = "B*.TIF", 1024  # the scene's own setting is not used
    cfg = make_cfg("predict.block_size=512")
    cfg.predict.scenes = [scene]
    [(_, _, open_scene)] = scene_sources(cfg)
    ds = open_scene()
    # a 512-px block reads whole 512-px chunks, each once (dask reads a whole chunk for any
    # part of it)
    for name in ds.data_vars:
        assert ds[name].chunksizes["y"][0] == 512 and ds[name].chunksizes["x"][0] == 512


def test_the_main_map_gets_a_regularised_copy_with_its_speckle_before_and_after(
    project: Path, make_cfg, store: TrackingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """On by default: <main map>_regularised.tif, equal to regularising the main map with
    the library, tagged with what was applied; the speckle figures in the log, the run's
    metrics and the stage's result. predict.regularise.enabled=false writes none."""
    from geoensemble.predict.regularise import regularise, speckle

    register(store, [fit_kmeans(NAMES, 6)], NAMES)
    with caplog.at_level(logging.INFO, logger="geoensemble"):
        out = stages.predict(make_cfg("predict.block_size=512", "predict.progress=false"))
    maps = {k: Path(v) for k, v in out["scenes"]["synthetic"]["maps"].items()}
    main, reg = Path(out["path"]), maps["regularised"]
    assert reg.name == "synthetic_geoensemble_champion_regularised.tif"
    with rasterio.open(main) as src, rasterio.open(reg) as dst:
        raw, got = src.read(1), dst.read(1)
        assert dst.tags()["geoensemble_regularisation"] == (
            "majority(radius=1);sieve(min_pixels=5,connectivity=4)"
        )
        assert dst.colormap(1) == src.colormap(1) and dst.crs == src.crs
    np.testing.assert_array_equal(got, regularise(raw, radius=1, min_pixels=5, connectivity=4))
    before, after = speckle(raw, min_pixels=5), speckle(got, min_pixels=5)
    # a speck alone amid no-data has no neighbour to join: it stays
    assert after.share < before.share / 5 and after.small_patches < before.small_patches / 100
    rec = out["scenes"]["synthetic"]["regularisation"]
    assert rec["before"]["share"] == pytest.approx(before.share, abs=1e-6)
    assert rec["after"]["small_patches"] == after.small_patches
    m = mlflow.MlflowClient().get_run(out["run_id"]).data.metrics
    assert m["speckle_share_before"] == pytest.approx(before.share, abs=1e-6)
    assert m["small_patches_before"] == before.small_patches
    assert m["small_patches_after"] == after.small_patches
    assert f"{100 * before.share:.2f} % of pixels off their 3x3 majority before" in caplog.text

    off = stages.predict(
        make_cfg(
            "predict.regularise.enabled=false", "predict.overwrite=true", "predict.progress=false"
        )
    )
    assert "regularised" not in off["scenes"]["synthetic"]["maps"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("predict.regularise.majority_radius=0", r"predict\.regularise\.majority_radius=0 is not"),
        ("predict.regularise.connectivity=6", r"predict\.regularise\.connectivity=6 is unknown"),
        ("predict.regularise.min_hectares=0.5", r"min_pixels=5 and .*min_hectares=0\.5 both set"),
    ],
)
def test_regularise_settings_are_checked_before_any_work(
    make_cfg, override: str, match: str
) -> None:
    from geoensemble.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        make_cfg(override)
