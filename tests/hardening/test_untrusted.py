"""Untrusted files and what runs record: pickles need an explicit opt-in, registry models
load through their logged skops flavour only, servers bind to loopback, and logged
parameters hold no secrets or home paths."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from geoensemble import tracking
from geoensemble.app.config import ExternalModelConfig
from geoensemble.app.members import external_member
from geoensemble.errors import ConfigError, InputFileError
from tests.conftest import ROOT
from tests.documentation import documentation_files


class Payload:
    """A pickle that, when loaded, writes a file: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "code from the pickle ran"))


# --------------------------------------------------------------------------- pickles
def test_a_pickled_model_is_not_opened_without_the_explicit_option(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload(marker)))
    ext = ExternalModelConfig(path=str(path), feature_names=["B2", "B3"])
    with pytest.raises(
        ConfigError,
        match=r"model\.pkl'? is a pickled model, and loading a pickle runs code stored in "
        r"the file.*predict\.external\.allow_pickle=true",
    ):
        external_member(ext)
    assert not marker.exists()
    # the opt-in really loads it (and so runs its code): the option is what protects
    ext.allow_pickle = True
    with pytest.raises(ConfigError, match=r"not a model with \.predict"):
        external_member(ext)
    assert marker.exists()


def test_an_external_skops_model_loads_without_pickle_and_only_with_trusted_types(
    tmp_path: Path,
) -> None:
    import numpy as np
    import skops.io
    from sklearn.cluster import KMeans
    from sklearn.utils._testing import MinimalClassifier

    X = np.random.default_rng(0).normal(size=(60, 2))
    km = KMeans(3, n_init=1, random_state=0).fit(X)
    good = tmp_path / "kmeans.skops"
    skops.io.dump(km, good)
    ext = ExternalModelConfig(path=str(good), feature_names=["B2", "B3"])  # no allow_pickle
    member = external_member(ext)
    np.testing.assert_array_equal(member.model.predict(X), km.predict(X))

    bad = tmp_path / "private.skops"
    skops.io.dump(MinimalClassifier().fit(X, [0, 1] * 30), bad)
    ext = ExternalModelConfig(path=str(bad), feature_names=["B2", "B3"], allow_pickle=True)
    with pytest.raises(
        InputFileError,
        match=r"cannot load external model .*private\.skops: it holds types geoensemble does "
        r"not trust \['sklearn\.utils\._testing\.MinimalClassifier'\].*trust\.types",
    ):
        external_member(ext)


# --------------------------------------------------------------------------- registry models
def test_registry_models_load_through_their_logged_skops_flavour(trained: dict[str, Any]) -> None:
    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    uri = trained["report"]["champion"]["uri"]
    info = mlflow.models.get_model_info(uri)
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    assert "python_function" in info.flavors
    loaded = tracking.Tracker(trained["uri"]).load_model(uri)
    assert type(loaded.model).__name__ == "Pipeline"
    assert loaded.feature_names == trained["report"]["feature_names"]
    local = Path(mlflow.artifacts.download_artifacts(uri))
    assert (local / "model.skops").is_file() and not list(local.glob("*.pkl"))


def register_pickled(store: str, obj: Any, name: str) -> str:
    """Log ``obj`` as a cloudpickle sklearn model and register it (as a careless user could)."""
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(obj, name="model", serialization_format="cloudpickle")
    mv = mlflow.register_model(info.model_uri, name)
    return f"models:/{name}/{mv.version}"


def test_a_pickled_registry_model_is_refused_before_its_code_runs(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = tracking.Tracker(store)
    tracker.open()
    marker = tmp_path / "pwned"
    model = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    model.payload = Payload(marker)  # type: ignore[attr-defined]
    uri = register_pickled(store, model, "pickled")
    marker.unlink(missing_ok=True)  # logging loads the model back once: that is not ours
    with pytest.raises(
        ConfigError, match=r"models:/pickled/1 is stored as a cloudpickle file.*skops"
    ):
        tracker.load_model(uri)
    assert not marker.exists()


def test_a_tampered_skops_model_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    import skops.io

    from tests.hardening.estimators import FaultyKMeans

    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    uri = trained["report"]["champion"]["uri"]
    # a copy of the champion's artifacts whose model.skops now holds an untrusted type
    copy = tmp_path / "model"
    shutil.copytree(mlflow.artifacts.download_artifacts(uri), copy)
    skops.io.dump(FaultyKMeans(), copy / "model.skops")
    flavors = mlflow.models.Model.load(copy).flavors
    with pytest.raises(
        InputFileError,
        match=r"holds types geoensemble does not trust \['tests\.hardening\.estimators\."
        r"FaultyKMeans'\]: retrain, or.*list them in trusted_types",
    ):
        tracking.load_sklearn_flavour(str(copy), flavors)


# --------------------------------------------------------------------------- servers
def test_every_server_command_we_document_binds_to_loopback() -> None:
    files = [*documentation_files(), ROOT / "MLproject", *(ROOT / "conf").rglob("*.yaml")]
    files += [*(ROOT / "pipelines").glob("*.py"), *(ROOT / "src").rglob("*.py")]
    commands = []
    for f in files:
        text = f.read_text()
        assert "0.0.0.0" not in text, f"{f} binds to every interface"
        commands += re.findall(r"(?:mlflow (?:server|ui)|dask scheduler)\b[^\n`]*", text)
    commands = [c for c in commands if "--" in c]  # commands with options, not prose
    assert len(commands) >= 3
    for c in commands:
        assert "--host 127.0.0.1" in c, c


# --------------------------------------------------------------------------- logged params
def test_logged_params_hold_no_secret_and_no_home_path(trained: dict[str, Any]) -> None:
    mlflow.set_tracking_uri(trained["uri"])
    client = mlflow.MlflowClient()
    run = client.get_run(trained["report"]["parent_run_id"])
    params = run.data.params
    assert 5 < len(params) < 15  # a few key params; the whole config is config.yaml
    home = str(trained["home"])
    for key, value in params.items():
        assert home not in value, (key, value)
        assert "s3cret" not in value, (key, value)
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml")
    assert home not in text and "s3cret" not in text
    config = yaml.safe_load(text)
    assert config["data"]["path"] == (
        "https://alice:***@example.com/scenes/scene.tif?token=***&band=1"
    )
    rel = Path(trained["dir"]).relative_to(home)
    assert config["predict"]["output_dir"] == f"~/{rel}/maps"
    assert config["tracking"]["uri"] == f"sqlite:///~/{rel}/mlflow.db"
    assert config["model"]["n_clusters"] is None and config["seed"] == 42
    # member runs too
    kids = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert kids and all(
        home not in v and "s3cret" not in v for k in kids for v in k.data.params.values()
    )


@pytest.mark.parametrize(
    ("key", "value", "logged"),
    [
        ("tracking.password", "hunter2", "***"),
        ("db.api_key", "abc", "***"),
        ("aws.secret_access_key", "abc", "***"),
        ("service.token", "abc", "***"),
        ("credentials", "abc", "***"),
        ("tracking.uri", "http://bob:pw@10.0.0.1:5000", "http://bob:***@10.0.0.1:5000"),
        (
            "data.path",
            "s3://bucket/a.tif?X-Amz-Signature=zz&x=1",
            "s3://bucket/a.tif?X-Amz-Signature=***&x=1",
        ),
        (
            "sweep.overrides",
            "model.n_clusters=4,6 +db.password=x",
            "model.n_clusters=4,6 +db.password=***",
        ),
        ("data.path", "~HOME~/data/scene", "~/data/scene"),
        ("data.layers", "['~HOME~/a.tif', '~HOME~/b.tif']", "['~/a.tif', '~/b.tif']"),
        ("data.path", "~HOME~other/scene", "~HOME~other/scene"),  # another user's home
        ("ensemble.keep", 3, "3"),
        ("model.tokenizer", "words", "words"),
        ("model.estimator.author", "me", "me"),
        ("tracking.password", None, "None"),
    ],
)
def test_param_redaction(
    key: str, value: Any, logged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    if isinstance(value, str):
        value = value.replace("~HOME~", "/home/alice")
    assert tracking.redact_value(key, value) == logged.replace("~HOME~", "/home/alice")
