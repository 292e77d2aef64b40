"""Bad input through the command line, stage by stage: a table of cases run in-process with
``stage_main(stage, ["--params", file])`` on the tiny scene.

Every case must end with (1) one line ``geoensemble <stage>: error: ...`` that names the
culprit (key, file or value) and says how to fix it, (2) exit code 2, (3) no traceback,
(4) nothing left behind that looks like an output (no new file, no ``.partial-*`` temp
file, no store folder) and (5) no half-finished MLflow run: a run the stage started is
FAILED with a ``failure_reason`` tag, and no model version was registered.

The module builds the good prerequisites once (scene, ingest, featurize, labels, train);
each case writes its inputs and outputs into its own ``tmp_path``. Hydra's command-line
errors and the debug flag are tested through real processes in ``test_bad_inputs_cli.py``.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from geoensemble.app.cli import stage_main
from geoensemble.app.config import to_dict
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.io.atomic import TMP_MARK
from tests.conftest import ROOT, TINY
from tests.integration.conftest import reset_mlflow_uris

# Outputs of each stage, pointed into the case's tmp_path (the inputs stay in the project).
OUTPUT_KEYS = {
    "scene": ["paths.raw"],
    "ingest": ["paths.stack", "paths.reports"],
    "featurize": ["paths.features", "paths.reports"],
    "labels": ["paths.labels"],
    "train": ["paths.reports"],
    "evaluate": ["paths.reports"],
    "predict": ["predict.output_dir"],
}


def _overrides(d: Path) -> list[str]:
    return [
        *TINY,
        f"paths.raw={d}/raw",
        f"paths.stack={d}/stack",
        f"paths.features={d}/features",
        f"paths.labels={d}/labels",
        f"paths.reports={d}/reports",
        f"data.path={d}/raw/scene",
        f"data.truth={d}/raw/labels/truth.tif",
        f"data.labels.path={d}/raw/labels/points.geojson",
        f"predict.output_dir={d}/maps",
        f"tracking.uri=sqlite:///{d}/mlflow.db",
        "predict.progress=false",
    ]


def compose_params(d: Path, *more: str) -> dict[str, Any]:
    """The tiny config reading the project in ``d``, as a plain dict (a params file)."""
    return to_dict(validate(compose([*_overrides(d), *more], config_dir=ROOT / "conf")))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny scene ingested, featurized, labelled and trained on (champion promoted)."""
    from geoensemble.app import stages

    d = tmp_path_factory.mktemp("bad-inputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEOENSEMBLE_ROOT", str(d))  # the artifact root of the SQLite store
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        reset_mlflow_uris()
        cfg = validate(compose(_overrides(d), config_dir=ROOT / "conf"))
        for stage in ("scene", "ingest", "featurize", "labels", "train"):
            out = stages.STAGES[stage](cfg)
        # training alone moves no @champion (only the pipeline or promote): promote it
        cfg.promote.version = int(out["champion"]["version"])
        stages.promote(cfg)
        yield d
        reset_mlflow_uris()


@pytest.fixture(scope="module")
def base(project: Path) -> dict[str, Any]:
    """The good params of the project (each case edits a copy)."""
    return compose_params(project)


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One bad input: ``setup(project, tmp)`` writes what it needs into ``tmp`` and returns
    config edits (dotted keys), or a ``str`` that becomes the params file as is."""

    id: str
    stage: str
    match: str  # regular expression the one-line message must match (culprit and fix)
    setup: Callable[[Path, Path], dict[str, Any] | str]
    groups: list[str] = field(default_factory=list)  # Hydra group overrides, e.g. model=gmm
    argv: Callable[[Path, Path], list[str]] | None = None  # instead of --params <file>
    failed_run: str | None = None  # the stage's MLflow run must be FAILED for this reason


CASES: list[Case] = []


def case(
    stage: str, match: str, **kw: Any
) -> Callable[[Callable[[Path, Path], Any]], Callable[[Path, Path], Any]]:
    def register(fn: Callable[[Path, Path], Any]) -> Callable[[Path, Path], Any]:
        CASES.append(Case(fn.__name__, stage, match, fn, **kw))
        return fn

    return register


def edits(**kv: Any) -> Callable[[Path, Path], dict[str, Any]]:
    """A setup that only edits config keys (``a__b`` is ``a.b``); the case id shows them."""
    changes = {k.replace("__", "."): v for k, v in kv.items()}

    def setup(proj: Path, tmp: Path) -> dict[str, Any]:
        return dict(changes)

    setup.__name__ = " ".join(f"{k}={v}" for k, v in changes.items())
    return setup


def scene_copy(proj: Path, tmp: Path) -> Path:
    d = tmp / "in" / "scene"
    shutil.copytree(proj / "raw" / "scene", d)
    return d


# config: unknown keys, wrong types, out-of-range values, broken params files
case("train", r"key 'ensemble\.sizee'.*Check the spelling")(edits(ensemble__sizee=3))
case("train", r"key 'ensemble\.size': Value 'zero'.*Integer")(edits(ensemble__size="zero"))
case("train", r"ensemble\.size=0 is out of range: use an integer >= 1")(edits(ensemble__size=0))
case("train", r"ensemble\.keep=9 is out of range: use at most the 3 members fitted")(
    edits(ensemble__keep=9)
)
case("train", r"ensemble\.member_fraction=1\.5 is out of range: use a fraction in \(0, 1\]")(
    edits(ensemble__member_fraction=1.5)
)
case("ingest", r"data\.chunk_size=4 is out of range: use an integer between 16")(
    edits(data__chunk_size=4)
)
case("predict", r"predict\.block_size=0 is out of range: use an integer between 16")(
    edits(predict__block_size=0)
)
case("predict", r"predict\.compress='jpeg' is out of range: use one of lzw, deflate")(
    edits(predict__compress="jpeg")
)
case("featurize", r"features\.nan_threshold=2 .*set features\.impute=median")(
    edits(features__nan_threshold=2)
)
case("featurize", r"features\.sensor='sentinel9' is unknown: use one of")(
    edits(features__sensor="sentinel9")
)
case("featurize", r"unknown index 'evi': use one of .*features\.derived")(
    edits(features__indices=["ndvi", "evi"])
)
case("scene", r"data\.scene\.crs='EPSG:999999' is not a CRS .*use an EPSG code")(
    edits(data__scene__crs="EPSG:999999")
)
case("scene", r"data\.scene\.width=8 is out of range: use an integer >= 32")(
    edits(data__scene__width=8)
)


@case(
    "train",
    r"config file .*nowhere\.yaml does not exist: .*pass --params",
    argv=lambda proj, tmp: ["--params", str(tmp / "nowhere.yaml")],
)
def missing_params_file(proj: Path, tmp: Path) -> dict[str, Any]:
    return {}


@case("train", r"config file .* is not readable YAML: .* at line 3, column 1\. Fix the file")
def params_not_yaml(proj: Path, tmp: Path) -> str:
    return "seed: 42\nensemble: {size: [1,\n"


@case("train", r"config file .* does not hold a mapping .*\(it is a list\).*app\.params")
def params_a_list(proj: Path, tmp: Path) -> str:
    return "- ensemble.size=3\n- model=gmm\n"


@case("train", r"config file .* has no ensemble section: .*regenerate it with python -m")
def params_without_a_section(proj: Path, tmp: Path) -> str:
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return yaml.safe_dump({k: v for k, v in params.items() if k != "ensemble"})


case("train", r"seed=-1 is out of range: use an integer between 0 and 2\*\*32 - 1")(edits(seed=-1))


# estimators that cannot be built: refused before the MLflow run starts (issue 12)
case(
    "train",
    r"model\.estimator\._target_='sklearn\.cluster\.NoSuchModel' cannot be imported; check",
)(edits(**{"model__estimator___target_": "sklearn.cluster.NoSuchModel"}))
case(
    "train",
    r"unexpected keyword argument 'n_clusterz'; check the keys under model\.estimator",
)(edits(model__estimator__n_clusterz=3))
case(
    "train",
    r"model\.space\.n_clusterz: MiniBatchKMeans \(step 'model'\) has no parameter 'n_clusterz'; "
    r"did you mean 'n_clusters'\?",
)(edits(model__estimator__n_clusters=4, model__space={"n_clusterz": {"low": 2, "high": 5}}))
case("train", r"ensemble metric\(s\) \['accuracyy'\] are not computed .*choose among")(
    edits(ensemble__metric="accuracyy")
)


# code a config names (issue 12): blocked modules never run; other code needs trust.modules.
# A command that ran would leave tmp/pwned behind, which the "nothing new" check catches.
@case(
    "featurize",
    r"features\.custom\[0\]\._target_='pydoc\.pipepager' names module pydoc.*trust\.modules",
)
def custom_feature_runs_a_command(proj: Path, tmp: Path) -> dict[str, Any]:
    pwn = {"_target_": "pydoc.pipepager", "text": "x", "cmd": f"touch {tmp}/pwned"}
    return {"features.custom": [pwn]}


@case("train", r"model\.estimator\._target_='subprocess\.Popen' names module subprocess")
def estimator_runs_a_command(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"model.estimator": {"_target_": "subprocess.Popen", "args": ["touch", f"{tmp}/pwned"]}}


@case("train", r"features\.steps\.best\.score_func\.path='os\.system' names module os")
def step_argument_names_a_command(proj: Path, tmp: Path) -> dict[str, Any]:
    ref = {"_target_": "hydra.utils.get_method", "path": "os.system"}
    return {
        "features.steps.best": {
            "_target_": "sklearn.feature_selection.SelectKBest",
            "score_func": ref,
        }
    }


@case("train", r"model\.space\.n_clusters\[0\]\._target_='builtins\.exec' names module builtins")
def searched_value_names_code(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"model.space": {"n_clusters": [{"_target_": "builtins.exec", "source": "1"}]}}


case(
    "featurize",
    r"features\.custom\[0\]\._target_='my_features\.moisture' names code outside "
    r"geoensemble's allow-list .*trust\.modules=\[my_features\]",
)(edits(features__custom=[{"_target_": "my_features.moisture"}]))
case("featurize", r"trust\.modules\[0\]='os' cannot be trusted: module os runs commands")(
    edits(trust__modules=["os"])
)
case("predict", r"trust\.types\[0\]='builtins\.exec' cannot be trusted: module builtins")(
    edits(trust__types=["builtins.exec"])
)

# names that become file names cannot leave their folder
_SAFE = r"is not a safe name: use 1-100 letters, digits, '_', '-' or '\.'"
case("predict", rf"config key data\.name='\.\./\.\./x' becomes part of a file name and {_SAFE}")(
    edits(data__name="../../x")
)
case("train", rf"config key tracking\.model_name='\.\./x' becomes part of a file name and {_SAFE}")(
    edits(tracking__model_name="../x")
)
case("predict", rf"config key predict\.alias='\.\./champion' .*{_SAFE}")(
    edits(predict__alias="../champion")
)
case("predict", rf"config key predict\.external\.label='a/b' .*{_SAFE}")(
    edits(predict__external__label="a/b")
)
case("featurize", rf"config key features\.derived\.\.\./r='\.\./r' .*{_SAFE}")(
    edits(features__derived={"../r": ["nir", "red"]})
)


@case("predict", rf"config key predict\.scenes\[0\]\.name='\.\./\.\./x' .*{_SAFE}")
def scene_name_leaves_the_folder(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"predict.scenes": [{"name": "../../x", "path": str(proj / "raw" / "scene")}]}


# ingest: missing, truncated, corrupt files; grids that do not line up; empty layers
@case("ingest", r"input .*nowhere does not exist: set data\.path")
def missing_raster_folder(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"data.path": str(tmp / "nowhere")}


@case("ingest", r"no file in .* matches data\.pattern='\*\.jp2'")
def no_file_matches(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"data.path": str(scene_copy(proj, tmp)), "data.pattern": "*.jp2"}


@case("ingest", r"cannot read .*B3\.TIF: .*Check that it is a complete raster file")
def truncated_geotiff(proj: Path, tmp: Path) -> dict[str, Any]:
    d = scene_copy(proj, tmp)
    f = d / "B3.TIF"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return {"data.path": str(d)}


@case("ingest", r"cannot read .*B5\.TIF: .*Check that it is a complete raster file")
def corrupt_geotiff(proj: Path, tmp: Path) -> dict[str, Any]:
    d = scene_copy(proj, tmp)
    (d / "B5.TIF").write_bytes(b"II*\x00" + b"not a tiff at all" * 40)
    return {"data.path": str(d)}


@case("ingest", r"layer 'B3' .* is not on the grid of 'B1'.*Set data\.align=reproject")
def layers_do_not_line_up(proj: Path, tmp: Path) -> dict[str, Any]:
    d = scene_copy(proj, tmp)
    with rasterio.open(d / "B3.TIF", "r+") as src:
        src.transform = src.transform @ Affine.translation(0.5, 0)
    return {"data.path": str(d)}


@case("ingest", r"layer 'B2' .* holds no valid pixel \(all no-data\): check its no-data")
def all_nodata_layer(proj: Path, tmp: Path) -> dict[str, Any]:
    d = scene_copy(proj, tmp)
    with rasterio.open(d / "B2.TIF", "r+") as src:
        src.write(np.zeros((src.height, src.width), src.dtypes[0]), 1)  # 0 is the nodata
    return {"data.path": str(d)}


@case("ingest", r"scene\.nc holds no raster variables .*data\.format=netcdf")
def corrupt_netcdf(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "scene.nc").write_bytes(b"CDF\x01" + b"\x00" * 20)
    return {"data.path": str(tmp / "scene.nc"), "data.format": "netcdf"}


@case("ingest", r"cannot read .*scene\.h5 as HDF5: .*Check that the file is complete")
def corrupt_hdf5(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "scene.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    return {"data.path": str(tmp / "scene.h5"), "data.format": "hdf5"}


# a stage run before its input exists, or on a damaged store
@case("featurize", r"nostack is not a finished geoensemble store: run the stage")
def featurize_before_ingest(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"paths.stack": str(tmp / "nostack")}


@case("featurize", r"is a damaged store: array\(s\) \['B4'\] .*missing on disk; rebuild")
def stack_missing_an_array(proj: Path, tmp: Path) -> dict[str, Any]:
    shutil.copytree(proj / "stack", tmp / "in" / "stack")
    shutil.rmtree(tmp / "in" / "stack" / "B4")
    return {"paths.stack": str(tmp / "in" / "stack")}


@case(
    "featurize",
    r"in/stack is a damaged store: layer 'B4' does not match what was written \(its chunk "
    r"files hold \d+ bytes instead of \d+\); rebuild it: dvc repro --force ingest",
)
def stack_with_truncated_chunks(proj: Path, tmp: Path) -> dict[str, Any]:
    shutil.copytree(proj / "stack", tmp / "in" / "stack")
    for chunk in (tmp / "in" / "stack" / "B4").glob("[0-9]*"):
        chunk.write_bytes(chunk.read_bytes()[:20])
    return {"paths.stack": str(tmp / "in" / "stack")}


@case("featurize", r"An input store is damaged \(a truncated or corrupt chunk file\): rebuild")
def stack_with_corrupt_chunks(proj: Path, tmp: Path) -> dict[str, Any]:
    # the same sizes as written (the manifest cannot tell): decoding fails
    shutil.copytree(proj / "stack", tmp / "in" / "stack")
    for chunk in (tmp / "in" / "stack" / "B4").glob("[0-9]*"):
        chunk.write_bytes(b"\x07" * chunk.stat().st_size)
    return {"paths.stack": str(tmp / "in" / "stack")}


@case("featurize", r"feature needs layer 'green' .*fix features\.sensor or the layer names")
def sensor_does_not_match_layers(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"features.sensor": "none"}


@case("train", r"nofeatures is not a finished geoensemble store: run the stage")
def train_before_featurize(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"paths.features": str(tmp / "nofeatures")}


@case(
    "train",
    r"classes\.json does not exist: run the labels stage",
    groups=["model=random_forest", "ensemble=supervised"],
)
def supervised_without_labels(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"paths.labels": str(tmp / "nolabels")}


@case("evaluate", r"train\.json does not exist: run the train stage first")
def evaluate_before_train(proj: Path, tmp: Path) -> dict[str, Any]:
    return {}


@case("evaluate", r"data\.truth=\S*gone\.tif does not exist: .*or set data\.truth=null")
def truth_raster_missing(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "reports").mkdir()
    shutil.copy(proj / "reports" / "train.json", tmp / "reports" / "train.json")
    return {"data.truth": str(tmp / "gone.tif")}


@case("predict", r"nowhere does not exist: set predict\.scenes\[0\]\.path to ")
def predict_scene_missing(proj: Path, tmp: Path) -> dict[str, Any]:
    scene = {"name": "other", "format": "geotiff_dir", "path": str(tmp / "nowhere")}
    return {"predict.scenes": [scene]}


@case("predict", r"nofeatures is not a finished geoensemble store: run the stage")
def predict_before_featurize(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"paths.features": str(tmp / "nofeatures")}


# labels
def _points(proj: Path) -> dict[str, Any]:
    return dict(json.loads((proj / "raw" / "labels" / "points.geojson").read_text()))


@case("labels", r"no label of .*far\.geojson falls on the features' grid .*check the file's CRS")
def labels_outside_the_raster(proj: Path, tmp: Path) -> dict[str, Any]:
    gj = _points(proj)
    for f in gj["features"]:
        x, y = f["geometry"]["coordinates"]
        f["geometry"]["coordinates"] = [x + 500_000, y]
    (tmp / "far.geojson").write_text(json.dumps(gj))
    return {"data.labels.path": str(tmp / "far.geojson")}


@case("labels", r"label file .*none\.gpkg does not exist: set data\.labels\.path")
def labels_file_missing(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"data.labels.path": str(tmp / "none.gpkg")}


@case("labels", r"cannot read label file .*broken\.geojson: .*Check the file")
def labels_file_corrupt(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    return {"data.labels.path": str(tmp / "broken.geojson")}


@case("labels", r"data\.labels\.attribute='landcover' is not a field .*it has \['class'")
def labels_attribute_missing(proj: Path, tmp: Path) -> dict[str, Any]:
    return {"data.labels.attribute": "landcover"}


@case("labels", r"class codes must be 0\.\.254, found 300\.\.\d+: recode the classes")
def classes_do_not_fit_uint8(proj: Path, tmp: Path) -> dict[str, Any]:
    gj = _points(proj)
    for i, f in enumerate(gj["features"]):
        f["properties"]["code"] = 300 + i
    (tmp / "many.geojson").write_text(json.dumps(gj))
    return {"data.labels.path": str(tmp / "many.geojson"), "data.labels.code_attribute": "code"}


# predict: models that do not exist or do not fit, pickles, outputs
case("predict", r"cannot load models:/geoensemble@nosuch: .*not found\. Run the train stage")(
    edits(predict__alias="nosuch")
)
case("predict", r"cannot load models:/geoensemble/99: .*not found\. Run the train stage")(
    edits(predict__model_uri="models:/geoensemble/99")
)
case("predict", r"predict\.ensemble='0123456789abcdef': no such run .*give the parent run id")(
    edits(predict__ensemble="0123456789abcdef")
)


@case(
    "predict",
    r"scene 'synthetic' .* lacks feature\(s\) \['B4', .*build the scene with the same features",
)  # the first scene is checked before the predict run starts: no run to mark FAILED
def model_features_do_not_match_scene(proj: Path, tmp: Path) -> dict[str, Any]:
    from geoensemble.io.stack import open_store, write_store

    names = ["B1", "B2", "B3", "ndvi"]
    write_store(open_store(proj / "features")[names], tmp / "in" / "features", meta={})
    return {"paths.features": str(tmp / "in" / "features")}


@case("predict", r"automl\.joblib' is a pickled model.*set predict\.external\.allow_pickle=true")
def pickle_without_opt_in(proj: Path, tmp: Path) -> dict[str, Any]:
    import joblib
    from sklearn.cluster import KMeans

    joblib.dump(KMeans(2, n_init=1).fit(np.arange(20.0).reshape(10, 2)), tmp / "automl.joblib")
    return {"predict.external.path": str(tmp / "automl.joblib")}


@case("predict", r"cannot load external model .*garbage\.joblib: .*Export it again")
def external_model_not_a_pickle(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "garbage.joblib").write_text("not a pickle")
    return {
        "predict.external.path": str(tmp / "garbage.joblib"),
        "predict.external.allow_pickle": True,
        "predict.external.feature_names": ["B1", "B2"],
    }


@case("predict", r"predict\.external\.impute_stats='.*nostats\.json' does not exist: give a JSON")
def external_impute_stats_missing(proj: Path, tmp: Path) -> dict[str, Any]:
    import joblib
    from sklearn.linear_model import LogisticRegression

    X = np.arange(40.0).reshape(10, 4)
    joblib.dump(LogisticRegression().fit(X, np.arange(10) % 2), tmp / "lr.joblib")
    return {
        "predict.external.path": str(tmp / "lr.joblib"),
        "predict.external.allow_pickle": True,
        "predict.external.feature_names": ["B1", "B2", "B3", "B4"],
        "predict.external.impute_stats": str(tmp / "nostats.json"),
        "features.nan_threshold": 1,
        "features.impute": "median",
    }


@case("predict", r"already exist outside DVC-managed outputs: .*set predict\.overwrite=true")
def map_exists_without_overwrite(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "maps").mkdir()
    (tmp / "maps" / "synthetic_geoensemble_champion.tif").write_bytes(b"an older map")
    return {"predict.output_dir": str(tmp / "maps")}


@case("predict", r"cannot write predict\.output_dir=.*/file/maps: .*is a file, not a folder")
def output_folder_under_a_file(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "file").write_text("a regular file")
    return {"predict.output_dir": str(tmp / "file" / "maps")}


case("predict", r"cannot write predict\.output_dir=/proc/geoensemble/maps: cannot create files")(
    edits(predict__output_dir="/proc/geoensemble/maps")
)


@case(
    "ingest",
    r"cannot write paths\.stack=.*/file/stack: .*/file is a file, not a folder.*set paths\.stack",
)
def store_under_a_file(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "file").write_text("a regular file")
    return {"paths.stack": str(tmp / "file" / "stack")}


case("scene", r"cannot write paths\.raw=/proc/geoensemble/raw: cannot create files in /proc")(
    edits(paths__raw="/proc/geoensemble/raw")
)
# checked before the fit: no model may be registered for a report that cannot be written
case("train", r"cannot write paths\.reports=/proc/geoensemble: cannot create files in /proc")(
    edits(paths__reports="/proc/geoensemble")
)
case("train", r"cannot open the MLflow store sqlite:////proc/geoensemble/mlflow\.db: .*tracking")(
    edits(tracking__uri="sqlite:////proc/geoensemble/mlflow.db")
)


# --------------------------------------------------------------------------- the checks
def files_under(*folders: Path) -> set[Path]:
    return {p for d in folders if d.exists() for p in d.rglob("*") if not p.is_dir()}


def set_key(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for k in parents:
        cfg = cfg.setdefault(k, {})
    cfg[last] = value


def mlflow_state(proj: Path) -> tuple[dict[str, Any], int]:
    """Every run of the project's store (id -> run) and the number of model versions."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{proj}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = {r.info.run_id: r for r in client.search_runs(exps, max_results=1000)}
    return runs, len(client.search_model_versions(max_results=1000))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_clearly_and_leaves_nothing(
    c: Case, project: Path, base: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    check_case(c, project, base, tmp_path, capfd)


def check_case(
    c: Case, project: Path, base: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> list[Any]:
    """Run one case and check the contract; return the MLflow runs the stage started."""
    made = c.setup(project, tmp_path)
    if isinstance(made, str):
        text = made
    else:
        cfg = compose_params(project, *c.groups) if c.groups else copy.deepcopy(base)
        for key in OUTPUT_KEYS[c.stage]:
            set_key(cfg, key, str(tmp_path / key.rsplit(".", 1)[-1]))
        for key, value in made.items():
            set_key(cfg, key, value)
        text = yaml.safe_dump(cfg)
    params = tmp_path / "params.yaml"
    params.write_text(text)
    argv = c.argv(project, tmp_path) if c.argv else ["--params", str(params)]
    before = files_under(tmp_path, project)
    runs_before, versions_before = mlflow_state(project)
    capfd.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        stage_main(c.stage, argv)

    err = capfd.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"geoensemble {c.stage}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"geoensemble {c.stage}: error: "), err
    assert re.search(c.match, lines[0]), lines[0]
    # nothing that looks like an output, no temp file, no store folder
    after = files_under(tmp_path, project)
    assert not [p for p in after if TMP_MARK in p.name], after
    mlflow_files = (project / "mlartifacts", project / "mlflow.db")
    new = {p for p in after - before if not str(p).startswith(tuple(map(str, mlflow_files)))}
    assert not new, new
    # no half-finished MLflow run, no model registered by a failed stage
    runs, versions = mlflow_state(project)
    assert versions == versions_before
    assert all(r.info.status != "RUNNING" for r in runs.values())
    started = [r for rid, r in runs.items() if rid not in runs_before]
    for r in started:
        assert r.info.status == "FAILED" and r.data.tags.get("failure_reason"), r.data.tags
    if c.failed_run:
        assert started, "the stage started no MLflow run"
        assert any(re.search(c.failed_run, r.data.tags["failure_reason"]) for r in started)
    return started


def test_the_table_covers_every_stage() -> None:
    assert len(CASES) >= 30
    assert {c.stage for c in CASES} == set(OUTPUT_KEYS)


def test_an_unexpected_exception_is_reported_as_a_bug_in_one_line(
    base: dict[str, Any],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geoensemble.app import stages

    def broken(cfg: Any) -> None:
        raise KeyError("band_9")

    monkeypatch.setitem(stages.STAGES, "evaluate", broken)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(base))
    with pytest.raises(SystemExit) as exit_info:
        stage_main("evaluate", ["--params", str(params)])
    err = capfd.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert re.search(
        r"^geoensemble evaluate: internal error: KeyError: 'band_9'\. This is a bug in "
        r"geoensemble: rerun with GEOENSEMBLE_DEBUG=1 for the traceback",
        err,
        re.M,
    ), err
