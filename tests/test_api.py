"""The public Python API: a script that imports only ``geoensemble`` computes the same maps as
the stages for the same settings and seed (embedded scene and RMNP), with and without a dask
client and MLflow; bad inputs raise the stages' one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoensemble.app import stages
from geoensemble.app.config import AppConfig
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from tests.conftest import ROOT, SHARED_DATA, TINY, run, tool_env

BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
INDICES = ["ndwi", "ndvi", "ndsi", "nbr"]
KEEP = 2

# What a notebook user writes: only `geoensemble` of ours (scikit-learn and dask are theirs).
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import geoensemble as ge
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    assert not {"mlflow", "hydra", "distributed"} & set(sys.modules), "import geoensemble"
    data, out = Path(os.environ["GE_DATA"]), Path(os.environ["GE_OUT"])
    kmeans = MiniBatchKMeans(batch_size=4096, n_init=3, max_iter=100, random_state=42)
    if os.environ["GE_KIND"] == "scene":
        bands = [f"B{i}" for i in range(1, 8)]
        ds = ge.load_array(data, layers=[ge.LayerSpec(b, file=rf"^{b}\\.TIF$") for b in bands])
        feats = ge.featurize(ds, sensor="landsat8", bands=bands, indices=%(indices)r)
        steps = [("scale", StandardScaler()), ("pca", PCA(n_components=6, random_state=42))]
    else:  # RMNP: the DEM is on another grid, resampled onto red's
        # conf/data/rmnp.yaml's specs in the order the stages see them: the ingest stage's
        # Zarr store lists its layers alphabetically, so bands=["*"] is blue, dem, green, red
        layers = [
            {"name": "blue", "file": r"^blue\\.tif$"},
            {"name": "dem", "file": r"^rmnp-dem\\.tif$", "resampling": "bilinear"},
            {"name": "green", "file": r"^green\\.tif$"},
            {"name": "red", "file": r"^red\\.tif$"},
        ]
        ds = ge.load_array(data, layers=layers, align="reproject", reference="red")
        feats = ge.featurize(ds)
        steps = [("scale", StandardScaler())]
    pipe = Pipeline([*steps, ("kmeans", kmeans)])
    space = {"kmeans__n_clusters": [4, 5, 6, 7, 8, 9, 10, 12]}
    kwargs = dict(space=space, size=3, generations=1, keep=%(keep)d, sample=6000, seed=42)
    tracking = os.environ.get("GE_TRACKING") or None
    if os.environ.get("GE_CLIENT"):
        from dask.distributed import Client, LocalCluster

        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster, Client(cluster) as client:
            ens = ge.fit_ensemble(pipe, feats, client=client, tracking=tracking, **kwargs)
            (maps,) = ge.predict_many(ens, [feats], client=client)
    else:
        ens = ge.fit_ensemble(pipe, feats, tracking=tracking, **kwargs)
        (maps,) = ge.predict_many(ens, [feats])
    written = {}
    for i, m in enumerate(ens.kept):
        label = m.name.replace("-", "_")  # member-003 -> variable member_003
        written[f"member:{i}"] = str(ge.write_map(maps[label], out / f"m{i}.tif"))
    for key in ("vote", "agreement"):
        written[key] = str(ge.write_map(maps[key], out / f"{key}.tif"))
    best = ens.scores.iloc[0]
    summary = {
        "maps": written,
        "mlflow_imported": "mlflow" in sys.modules,
        "members": len(ens.members),
        "best": best.name,
        "best_aic": float(best["aic"]),
        "crs": str(maps.rio.crs),
    }
    (out / "summary.json").write_text(json.dumps(summary))
    """
) % {"indices": INDICES, "keep": KEEP}

STAGE_OVERRIDES = [
    f"ensemble.keep={KEEP}",
    "predict=ensemble",
    "predict.outputs.probabilities=false",
    "predict.quicklook=false",
    "predict.progress=false",
    "ensemble.previews=false",
    "predict.regularise.enabled=false",  # the API's regularise_map is a step of its own
    "predict.class_map=false",
]


def _compose(t: Path, *overrides: str) -> AppConfig:
    paths = [
        f"paths.raw={t}/raw",
        f"paths.stack={t}/stack",
        f"paths.features={t}/features",
        f"paths.labels={t}/labels",
        f"paths.reports={t}/reports",
        f"data.path={t}/raw/scene",
        f"data.truth={t}/raw/labels/truth.tif",
        f"data.labels.path={t}/raw/labels/points.geojson",
        f"predict.output_dir={t}/maps",
        f"tracking.uri=sqlite:///{t}/mlflow.db",
    ]
    return validate(
        compose([*TINY, *paths, *STAGE_OVERRIDES, *overrides], config_dir=ROOT / "conf")
    )


def _stage_maps(cfg: AppConfig, *, with_scene: bool) -> dict[str, Any]:
    """Run the pipeline's stages on ``cfg``; the predict stage's map paths by output key."""
    for name in ("scene", "ingest", "featurize", "labels", "train"):
        if name != "scene" or with_scene:
            stages.PIPELINE[name](cfg)
    out = stages.predict(cfg)
    (scene,) = out["scenes"].values()
    return {k: Path(v) for k, v in scene["maps"].items()}


@pytest.fixture(scope="module")
def scene_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The embedded scene through every stage, once: its raw folder and the stage's maps."""
    t = tmp_path_factory.mktemp("api_scene")
    # no reference classes: the stage's maps then carry the neutral cluster names the API
    # writes (naming clusters after a truth raster is the predict stage's own step)
    maps = _stage_maps(_compose(t, "data.truth=null", "data.labels.path=null"), with_scene=True)
    return t / "raw" / "scene", maps


@pytest.fixture(scope="module")
def rmnp_stage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    rmnp = SHARED_DATA / "rmnp"
    if not (rmnp / "red.tif").exists():
        pytest.skip("../shared/data/rmnp is not available")
    t = tmp_path_factory.mktemp("api_rmnp")
    cfg = _compose(
        t,
        "data=rmnp",
        f"data.path={rmnp}",
        "data.labels.path=null",
        "data.truth=null",
        "features=bands",
        "features.quicklooks=[]",
        "features.false_colour=[]",
    )
    return rmnp, _stage_maps(cfg, with_scene=False)


def _run_script(tmp: Path, data: Path, kind: str, *, client: bool, tracking: str | None) -> dict:
    (tmp / "out").mkdir()
    script = tmp / "walkthrough.py"
    script.write_text(SCRIPT)
    env = {"GE_DATA": str(data), "GE_OUT": str(tmp / "out"), "GE_KIND": kind}
    env.update({"GE_CLIENT": "1"} if client else {})
    env.update({"GE_TRACKING": tracking} if tracking else {})
    run([sys.executable, str(script)], tmp, timeout=300, **env)
    return json.loads((tmp / "out" / "summary.json").read_text())


def _read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with rasterio.open(path) as src:
        facts = {
            "crs": src.crs,
            "transform": src.transform,
            "nodata": src.nodata,
            "dtype": src.dtypes[0],
            "class_names": src.tags().get("class_names"),
            "colormap": src.colormap(1)
            if src.dtypes[0] == "uint8" and src.tags().get("class_names")
            else None,
        }
        return src.read(), facts


def _same_maps(api: dict[str, str], stage: dict[str, Path]) -> None:
    assert (
        sorted(api)
        == sorted(stage)
        == sorted([*(f"member:{i}" for i in range(KEEP)), "vote", "agreement"])
    )
    for key, path in stage.items():
        want, want_facts = _read(path)
        got, got_facts = _read(Path(api[key]))
        assert got_facts == want_facts, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    vote, _ = _read(stage["vote"])
    assert (vote == 255).any() and (vote != 255).any()  # no-data kept, and a real map


@pytest.mark.parametrize(
    ("client", "with_mlflow"), [(False, False), (True, True)], ids=["in_process", "client_mlflow"]
)
def test_script_reproduces_the_stage_maps_of_the_embedded_scene(
    scene_stage: tuple[Path, dict[str, Any]], tmp_path: Path, client: bool, with_mlflow: bool
) -> None:
    uri = f"sqlite:///{tmp_path}/api.db" if with_mlflow else None
    data, stage = scene_stage
    summary = _run_script(tmp_path, data, "scene", client=client, tracking=uri)
    _same_maps(summary["maps"], stage)
    assert summary["crs"] == "EPSG:32613" and summary["members"] == 3
    assert summary["mlflow_imported"] is with_mlflow
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left
    if uri:
        _check_logged(uri, summary)


def _check_logged(uri: str, summary: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "geoensemble"]
    runs = client.search_runs([exp.experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)  # every run closed
    parents = [r for r in runs if r.data.tags.get("geoensemble.role") == "ensemble"]
    assert len(parents) == 1 and parents[0].data.tags["geoensemble.source"] == "api"
    assert parents[0].data.metrics["best_aic"] == pytest.approx(summary["best_aic"])
    assert len(runs) == 1 + summary["members"]
    versions = client.search_model_versions("name = 'geoensemble'")
    assert len(versions) == KEEP
    best = client.get_model_version_by_alias("geoensemble", "notebook")
    assert best.tags["member"] == summary["best"] and best.tags["rank"] == "1"


def test_script_reproduces_the_stage_maps_of_rmnp(
    rmnp_stage: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    data, stage = rmnp_stage
    summary = _run_script(tmp_path, data, "rmnp", client=False, tracking=None)
    _same_maps(summary["maps"], stage)
    assert summary["crs"] == "EPSG:4326"


def test_import_is_fast_and_imports_no_heavy_library() -> None:
    code = (
        "import sys, geoensemble; print(sorted(m for m in ('mlflow', 'hydra', 'distributed', "
        "'dask', 'xarray', 'sklearn') if m in sys.modules)); print(geoensemble.__all__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=tool_env(), check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == str(
        [
            "Ensemble",
            "EnsembleSearch",
            "LayerSpec",
            "SpatialBlockCV",
            "draw_validation_sample",
            "featurize",
            "fit_ensemble",
            "load_array",
            "predict_many",
            "rasterize_labels",
            "regularise_map",
            "write_map",
        ]
    )
