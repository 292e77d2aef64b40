"""Trust comes from geoensemble, never from a file (issue 12, "Code execution").

A registered model whose ``model.skops`` *and* ``MLmodel`` were edited to run a command is
refused by ``predict`` before anything in it is built: by the sha256 recorded at
registration, and, when that tag was rewritten too, by geoensemble's own allow-list of types
(the ``MLmodel``'s ``skops_trusted_types`` are ignored). A truncated file is one clear line.
``features.custom`` runs a user's module only when ``trust.modules`` lists it (the README
example). Everything runs against a real SQLite store and the real command line.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from sklearn.cluster import MiniBatchKMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from geoensemble import tracking
from geoensemble.errors import InputFileError
from tests.integration.conftest import reset_mlflow_uris, tiny_overrides
from tests.test_bad_inputs_cli import outputs_in, stage, the_error_line

MODEL = "tampered"


def feature_names(featurized: Path) -> list[str]:
    from geoensemble.io.stack import open_store

    return [str(n) for n in open_store(featurized / "features").data_vars]


def register(store: Path, names: list[str], model: Any = None, name: str = MODEL) -> str:
    """Fit ``model`` (a small K-Means pipeline by default) on random rows with ``names`` as
    features, log and register it exactly as the train stage does; return its URI."""
    uri = f"sqlite:///{store}/mlflow.db"
    tracker = tracking.Tracker(uri)
    exp = tracker.open()
    # For the tests' own checks with a bare MlflowClient(); geoensemble never relies on it.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    X = np.random.default_rng(0).normal(size=(200, len(names))).astype(np.float32)
    pipe = model or Pipeline([("scale", StandardScaler()), ("model", MiniBatchKMeans(3, n_init=1))])
    pipe.fit(X)
    run_id = tracker.client.create_run(exp).info.run_id
    version = tracker.log_model(
        run_id, pipe, feature_names=names, example=X[:5], model_name=name, tags={}
    )
    tracker.client.set_terminated(run_id, "FINISHED")
    tracker.set_alias(name, "champion", version)
    return f"models:/{name}@champion"


@pytest.fixture
def store(tmp_path: Path, featurized: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A real SQLite store in ``tmp_path/store`` with one registered model (its files found
    on disk, where an attacker would edit them)."""
    d = tmp_path / "store"
    d.mkdir()
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(d))  # the artifact root of the store
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    reset_mlflow_uris()
    uri = register(d, feature_names(featurized))
    (skops_file,) = (d / "mlartifacts").rglob("model.skops")
    yield {"dir": d, "uri": uri, "skops": skops_file, "mlmodel": skops_file.parent / "MLmodel"}
    reset_mlflow_uris()


def command_payload(module: str, name: str, argument: str) -> bytes:
    """A skops file whose only object is ``module.name(argument)``: loading it calls that."""
    schema = json.loads(zipfile.ZipFile(io.BytesIO(skops_dumps((argument,)))).read("schema.json"))
    meta = {k: schema.pop(k) for k in ("protocol", "_skops_version")}
    call = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": schema,
        **meta,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", json.dumps(call))
    return buf.getvalue()


def skops_dumps(obj: Any) -> bytes:
    import skops.io

    return bytes(skops.io.dumps(obj))


def tamper(s: dict[str, Any], payload: bytes, trusted: str) -> None:
    """Replace the model file and make its MLmodel trust the payload's type."""
    s["skops"].write_bytes(payload)
    meta = yaml.safe_load(s["mlmodel"].read_text())
    meta["flavors"]["sklearn"]["skops_trusted_types"] = [trusted]
    s["mlmodel"].write_text(yaml.safe_dump(meta))


def predict(s: dict[str, Any], featurized: Path, tmp: Path, *more: str) -> Any:
    args = [
        *tiny_overrides(featurized),
        f"tracking.uri=sqlite:///{s['dir']}/mlflow.db",
        f"tracking.model_name={MODEL}",
        f"predict.output_dir={tmp}/maps",
        f"paths.reports={tmp}/reports",
        "predict.progress=false",
        *more,
    ]
    return stage("predict", *args, cwd=tmp, GEOENSEMBLE_ROOT=str(s["dir"]))


def assert_no_run_left_open(s: dict[str, Any]) -> None:
    uri = f"sqlite:///{s['dir']}/mlflow.db"
    client = mlflow.MlflowClient(uri, uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    assert all(r.info.status != "RUNNING" for r in client.search_runs(exps))


# --------------------------------------------------------------------------- registry models
def test_a_registered_model_records_its_digest_and_loads_through_our_allow_list(
    store: dict[str, Any],
) -> None:
    mv = mlflow.MlflowClient().get_model_version(MODEL, "1")
    assert mv.tags[tracking.SKOPS_SHA256_TAG] == tracking.file_sha256(store["skops"])
    loaded = tracking.Tracker(f"sqlite:///{store['dir']}/mlflow.db").load_model(store["uri"])
    assert type(loaded.model).__name__ == "Pipeline" and loaded.version == "1"


def test_a_tampered_model_and_mlmodel_run_no_command_in_predict(
    store: dict[str, Any], featurized: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    tamper(store, command_payload("os", "system", f"touch {marker}"), trusted="os.system")

    proc = predict(store, featurized, tmp_path)

    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "predict")
    assert re.search(
        rf"cannot load models:/{MODEL}@champion: its model\.skops is not the file registered "
        r".*changed or damaged after train logged it: retrain \(python pipelines/train\.py\)",
        line,
    ), line
    assert not marker.exists()
    assert not (tmp_path / "maps").exists() or not outputs_in(tmp_path / "maps")
    assert_no_run_left_open(store)
    # The payload is live: MLflow's own loader, which trusts what the MLmodel lists, runs it.
    mlflow.set_tracking_uri(f"sqlite:///{store['dir']}/mlflow.db")
    mlflow.set_registry_uri(f"sqlite:///{store['dir']}/mlflow.db")
    mlflow.sklearn.load_model(store["uri"])
    assert marker.exists()


def test_a_tampered_model_with_a_rewritten_digest_is_refused_by_our_allow_list(
    store: dict[str, Any], featurized: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('code from the model ran')"
    tamper(store, command_payload("builtins", "exec", code), trusted="builtins.exec")
    # as if the attacker could write the store too, or the model predates the digest
    mlflow.MlflowClient().set_model_version_tag(
        MODEL, "1", tracking.SKOPS_SHA256_TAG, tracking.file_sha256(store["skops"])
    )

    proc = predict(store, featurized, tmp_path)

    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "predict")
    assert re.search(
        rf"cannot load models:/{MODEL}@champion: it holds types geoensemble does "
        r"not trust \['builtins\.exec'\]: retrain, or.*trust\.types",
        line,
    ), line
    assert not marker.exists()
    assert_no_run_left_open(store)


@pytest.mark.parametrize("tag", ["kept", "deleted"])
def test_a_truncated_model_file_is_one_line_naming_the_model_and_the_fix(
    store: dict[str, Any], featurized: Path, tmp_path: Path, tag: str
) -> None:
    data = store["skops"].read_bytes()
    store["skops"].write_bytes(data[: len(data) // 2])
    if tag == "deleted":  # a model registered before digests were recorded
        mlflow.MlflowClient().delete_model_version_tag(MODEL, "1", tracking.SKOPS_SHA256_TAG)
        expected = r"its model\.skops is damaged or truncated: retrain .*register an intact copy"
    else:
        expected = r"its model\.skops is not the file registered .*retrain"

    proc = predict(store, featurized, tmp_path)

    assert proc.returncode == 2, proc.stderr
    line = the_error_line(proc, "predict")
    assert f"cannot load models:/{MODEL}@champion: " in line
    assert re.search(expected, line), line
    assert "internal error" not in line
    assert_no_run_left_open(store)


def test_a_type_of_your_own_loads_only_when_trust_types_names_it(
    featurized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.hardening.estimators import FaultyKMeans

    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    reset_mlflow_uris()
    uri = register(tmp_path, feature_names(featurized), FaultyKMeans(3, n_init=1), "own")
    tracker = tracking.Tracker(f"sqlite:///{tmp_path}/mlflow.db")
    own = "tests.hardening.estimators.FaultyKMeans"
    with pytest.raises(
        InputFileError, match=rf"does not trust \['{own}'\].*trusted_types=\[{own}\]"
    ):
        tracker.load_model(uri)
    loaded = tracker.load_model(uri, trusted_types=[own])
    assert type(loaded.model).__name__ == "FaultyKMeans"
    reset_mlflow_uris()


# --------------------------------------------------------------------------- features.custom
MY_FEATURES = 'def moisture(ds, *, name="msi"):\n    return {name: ds["swir1"] / ds["nir"]}\n'


def featurize(featurized: Path, tmp: Path, *more: str) -> subprocess.CompletedProcess[str]:
    args = [
        *tiny_overrides(featurized),
        f"paths.features={tmp}/features",
        f"paths.reports={tmp}/reports",
        "features.custom=[{_target_:my_features.moisture}]",
        *more,
    ]
    path = os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")])
    return stage("featurize", *args, cwd=tmp, PYTHONPATH=path)


def test_the_readme_custom_feature_runs_once_its_module_is_trusted(
    featurized: Path, tmp_path: Path
) -> None:
    from geoensemble.io.stack import open_store

    (tmp_path / "my_features.py").write_text(MY_FEATURES)

    refused = featurize(featurized, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert re.search(
        r"features\.custom\[0\]\._target_='my_features\.moisture' names code outside "
        r"geoensemble's allow-list .*trust\.modules=\[my_features\]",
        the_error_line(refused, "featurize"),
    )
    assert not (tmp_path / "features").exists()

    ok = featurize(featurized, tmp_path, "trust.modules=[my_features]")
    assert ok.returncode == 0, ok.stderr
    assert "msi" in open_store(tmp_path / "features").data_vars


def test_pydoc_pipepager_in_features_custom_runs_nothing(featurized: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = f"features.custom=[{{_target_:pydoc.pipepager,text:x,cmd:'touch {marker}'}}]"
    for trust in ([], ["trust.modules=[pydoc]"]):
        proc = featurize(featurized, tmp_path, spec, *trust)
        assert proc.returncode == 2, proc.stderr
        line = the_error_line(proc, "featurize")
        assert re.search(r"pydoc.*(names module pydoc|cannot be trusted: module pydoc)", line)
        assert not marker.exists()
    assert not (tmp_path / "features").exists()


def test_a_deleted_artifact_store_is_named_as_such_not_as_a_missing_training(
    store: dict[str, Any],
) -> None:
    import shutil

    from geoensemble.errors import InputFileError

    shutil.rmtree(store["dir"] / "mlartifacts")
    tracker = tracking.Tracker(f"sqlite:///{store['dir']}/mlflow.db")
    with pytest.raises(InputFileError) as err:
        tracker.load_model(store["uri"])
    line = str(err.value)
    assert "\n" not in line and "Run the train stage first" not in line
    assert re.search(
        r"version 1 of 'tampered' is registered, but its files cannot be read .*the artifact "
        r"store was moved or deleted; restore it",
        line,
    ), line
