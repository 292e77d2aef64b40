"""Tracking, compute and trust errors: the Python caller reads the library's arguments, a
stage's user the config keys that feed them (issue 22)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from geoensemble import trust
from geoensemble.app.keys import KEYS, keyed
from geoensemble.app.params import compose
from geoensemble.app.validate import validate
from geoensemble.compute import connect
from geoensemble.errors import ConfigError, ModelNotFoundError, TrackingError
from geoensemble.tracking import Tracker
from tests.conftest import ROOT


def test_a_bad_scheduler_address_names_address_or_compute_address() -> None:
    with pytest.raises(ConfigError) as e:
        connect("127.0.0.1", timeout=2)  # no scheme nor port: refused before any connection
    assert str(e.value) == (
        "address='127.0.0.1' is not a scheduler URL: use tcp://host:port (e.g. "
        "tcp://127.0.0.1:8786), or leave address unset for a local cluster"
    )
    assert e.value.arguments == {"address": "Cluster.address"}
    assert str(keyed(e.value)) == (
        "compute.address='127.0.0.1' is not a scheduler URL: use tcp://host:port (e.g. "
        "tcp://127.0.0.1:8786), or leave compute.address unset for a local cluster"
    )


def test_a_geopackage_given_as_the_store_names_uri_or_tracking_uri(tmp_path: Path) -> None:
    gpkg = tmp_path / "layers.gpkg"
    with sqlite3.connect(gpkg) as con:  # a real SQLite file carrying GeoPackage's application id
        con.execute(f"PRAGMA application_id = {0x47504B47}")
        con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(TrackingError) as e:
        Tracker(f"sqlite:///{gpkg}").check()
    assert str(e.value) == (
        f"{gpkg} is a GeoPackage, not an MLflow store: set uri to an MLflow store, or to a new "
        f"file such as sqlite:///{tmp_path}/mlflow.db"
    )
    assert str(keyed(e.value)) == (
        f"{gpkg} is a GeoPackage, not an MLflow store: set tracking.uri to an MLflow store, or "
        f"to a new file such as sqlite:///{tmp_path}/mlflow.db"
    )


def test_an_unknown_ensemble_run_names_spec_or_predict_ensemble(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", experiment="keys")
    experiment = tracker.open()
    with pytest.raises(ModelNotFoundError) as e:
        tracker.find_ensemble_run("campaign:autumn", experiment)
    assert str(e.value) == (
        f"spec='campaign:autumn': no ensemble run matches in experiment {experiment}; run the "
        f"train stage first or check the tag"
    )
    assert str(keyed(e.value)).startswith("predict.ensemble='campaign:autumn': no ensemble run")


def test_the_trust_policy_names_modules_or_trust_modules() -> None:
    # the library caller's own argument (custom[0]) and the policy's (modules), both declared
    spec = {"_target_": "my_features.moisture"}
    with pytest.raises(ConfigError) as e:
        trust.check_custom(spec, "custom[0]", arguments={"custom": "featurize.custom"})
    assert str(e.value) == (
        "custom[0]._target_='my_features.moisture' names code outside geoensemble's "
        "allow-list (geoensemble.features.custom): if you wrote or trust module my_features, "
        "add it with modules=[my_features]"
    )
    assert e.value.arguments == {"custom": "featurize.custom", "modules": "check_target.modules"}
    table = {**KEYS, "featurize.custom": "features.custom"}
    assert str(keyed(e.value, table)) == (
        "features.custom[0]._target_='my_features.moisture' names code outside geoensemble's "
        "allow-list (geoensemble.features.custom): if you wrote or trust module my_features, "
        "add it with trust.modules=[my_features]"
    )


def test_validation_names_the_trust_keys_the_library_names_its_arguments() -> None:
    with pytest.raises(ConfigError, match=r"^modules\[0\]='os' cannot be trusted: module os"):
        trust.check_modules(["os"])
    with pytest.raises(ConfigError, match=r"^types\[0\]='builtins\.exec' cannot be trusted"):
        trust.check_types(["builtins.exec"])
    cfg = compose(["trust.modules=[os]"], config_dir=ROOT / "conf")
    with pytest.raises(ConfigError, match=r"^trust\.modules\[0\]='os' cannot be trusted: module"):
        validate(cfg)
    cfg = compose(["trust.types=[builtins.exec]"], config_dir=ROOT / "conf")
    with pytest.raises(ConfigError, match=r"^trust\.types\[0\]='builtins\.exec' cannot be"):
        validate(cfg)
