"""Which models: feature checks, the external-model opt-in, and registry resolution."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
import rasterio

from geoensemble.app.config import (
    AppConfig,
    ExternalModelConfig,
    PredictOutputsConfig,
    TrackingConfig,
)
from geoensemble.app.members import external_member, resolve_members
from geoensemble.errors import ConfigError, FeatureMismatchError, InputFileError, ModelNotFoundError
from geoensemble.predict import (
    BlockPredictor,
    ClassScheme,
    LoadedMember,
    check_features,
    output_keys,
    predict_scene,
)
from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, register, valid_table


@pytest.mark.parametrize(
    ("model", "scene", "match"),
    [
        (["a", "b", "c"], ["a", "b"], r"lacks feature\(s\) \['c'\].*extra in the scene: none"),
        (["a", "b", "c"], ["a", "x", "y"], r"\['b', 'c'\].*extra in the scene: \['x', 'y'\]"),
        (["ndvi"], ["NDVI"], r"lacks feature\(s\) \['ndvi'\].*\['NDVI'\]"),
        (["a"], [], r"lacks feature\(s\) \['a'\]"),
    ],
)
def test_feature_mismatch_lists_missing_and_extra(model: list, scene: list, match: str) -> None:
    with pytest.raises(FeatureMismatchError, match=match):
        check_features(model, scene, where="scene 'x'")


def test_scene_order_and_extra_layers_are_fixed_automatically(tmp_path: Path) -> None:
    ds = make_scene(names=["extra", *reversed(NAMES)])
    est = fit_kmeans(NAMES)
    names = check_features(NAMES, list(ds.data_vars), where="scene")
    assert names == NAMES
    members = [LoadedMember("m", est, NAMES, "test:m")]
    pred = BlockPredictor(members, names, ClassScheme.of(members), ["member:0"])
    s = predict_scene(ds, pred, {"member:0": tmp_path / "m.tif"}, block_size=64)
    X, mask = valid_table(ds, NAMES)
    with rasterio.open(s.maps["member:0"]) as src:
        np.testing.assert_array_equal(src.read(1)[mask], est.predict(X))


def save(model: object, path: Path) -> Path:
    if path.suffix == ".joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    return path


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ConfigError, r"runs code stored in the file.*predict\.external\.allow_pickle=true"),
        ({"allow_pickle": True}, ConfigError, r"predict\.external\.feature_names is empty"),
        (
            {"allow_pickle": True, "feature_names": NAMES, "path": "missing.pkl"},
            InputFileError,
            r"missing\.pkl does not exist",
        ),
        (
            {"allow_pickle": True, "feature_names": NAMES, "path": "notamodel.pkl"},
            ConfigError,
            r"holds a dict, not a model",
        ),
        (
            {"allow_pickle": True, "feature_names": ["a", "b"], "path": "named.joblib"},
            FeatureMismatchError,
            r"differ from the names named\.joblib was fitted with \['p', 'q'\]",
        ),
    ],
)
def test_external_model_is_refused_without_the_opt_in_and_checked(
    tmp_path: Path, kwargs: dict, error: type, match: str
) -> None:
    import pandas as pd
    from sklearn.cluster import KMeans

    save(fit_kmeans(NAMES), tmp_path / "model.pkl")
    save({"not": "a model"}, tmp_path / "notamodel.pkl")
    frame = pd.DataFrame({"p": [0.0, 1, 2, 3], "q": [1.0, 0, 1, 0]})
    save(KMeans(2, n_init=1).fit(frame), tmp_path / "named.joblib")
    ext = ExternalModelConfig(path=str(tmp_path / kwargs.pop("path", "model.pkl")), **kwargs)
    with pytest.raises(error, match=match):
        external_member(ext)


def test_external_model_with_the_opt_in_predicts(tmp_path: Path) -> None:
    est = fit_forest(NAMES)
    ext = ExternalModelConfig(
        path=str(save(est, tmp_path / "automl.joblib")), allow_pickle=True, feature_names=NAMES
    )
    m = external_member(ext)
    assert (m.label, m.kind, m.feature_names) == ("automl", "classifier", NAMES)
    X, _ = valid_table(make_scene(), NAMES)
    keys = output_keys([m], PredictOutputsConfig())
    out = BlockPredictor([m], NAMES, ClassScheme.of([m]), keys).predict_table(X[:500])
    np.testing.assert_array_equal(out["member:0"], est.predict(X[:500]))


def cfg_with(make_cfg, *overrides: str) -> AppConfig:
    return make_cfg(*overrides)


def test_models_resolve_by_alias_version_and_ensemble(make_cfg, store: TrackingConfig) -> None:
    from geoensemble.app.tracker import tracker_for

    ests = [fit_kmeans(NAMES, k) for k in (3, 4, 5)]
    parent, versions = register(store, ests, NAMES, ensemble_tags={"campaign": "spring"})
    register(store, [fit_kmeans(NAMES, 6)], NAMES, alias=None)  # a later, other ensemble
    exp = tracker_for(store)
    exp.open()

    def uris(*overrides: str) -> list[str]:
        return [m.uri for m in resolve_members(make_cfg(*overrides), exp)]

    assert uris() == ["models:/geoensemble@champion"]
    assert uris("predict.model_uri=models:/geoensemble/2") == ["models:/geoensemble/2"]
    kept = [f"models:/geoensemble/{v}" for v in versions]
    assert uris(f"predict.ensemble={parent}") == kept
    assert uris("predict.ensemble=campaign:spring") == kept
    assert uris("predict.ensemble='campaign=spring'") == kept
    assert uris("predict.ensemble=latest") == ["models:/geoensemble/4"]
    ms = resolve_members(make_cfg(f"predict.ensemble={parent}"), exp)
    # by role, not registry version: v1 holds @champion, the others by rank
    assert [m.label for m in ms] == [
        "geoensemble_champion",
        "geoensemble_rank2",
        "geoensemble_rank3",
    ]
    exp.set_alias("geoensemble", "champion", "4")  # promoted elsewhere: the best is no champion
    ms = resolve_members(make_cfg(f"predict.ensemble={parent}"), exp)
    assert [m.label for m in ms] == ["geoensemble_best", "geoensemble_rank2", "geoensemble_rank3"]
    assert all(m.run_id and m.model_id and m.feature_names == NAMES for m in ms)
    with pytest.raises(ModelNotFoundError, match=r"predict\.ensemble='0123abcd'"):
        resolve_members(make_cfg("predict.ensemble=0123abcd"), exp)
    with pytest.raises(ModelNotFoundError, match=r"no ensemble run matches"):
        resolve_members(make_cfg("predict.ensemble=campaign:autumn"), exp)


def test_members_of_different_kinds_are_refused(make_cfg, store: TrackingConfig) -> None:
    from geoensemble.app.tracker import tracker_for

    register(store, [fit_kmeans(NAMES), fit_forest(NAMES)], NAMES)
    cfg = make_cfg("predict.models=[models:/geoensemble/1,models:/geoensemble/2]")
    with pytest.raises(ConfigError, match=r"mix model kinds \['classifier', 'cluster'\]"):
        resolve_members(cfg, tracker_for(store))


def test_blocks_predicted_in_parallel_hold_the_models_to_their_share_of_cores() -> None:
    """A fitted K-Means keeps the OpenMP thread count of the machine it was fitted on, a
    forest its n_jobs: inside threads_held both are the block's share, restored after."""
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geoensemble.predict.models import threads_held

    X = np.random.default_rng(0).normal(size=(200, 3))
    km = KMeans(3, n_init=1, random_state=0).fit(X)
    km._n_threads = 8  # as if fitted on an 8-core machine
    forest = make_pipeline(
        StandardScaler(), RandomForestClassifier(5, n_jobs=-1, random_state=0)
    ).fit(X, km.labels_)
    before = km.predict(X)
    with threads_held([km, forest], 1):
        assert km._n_threads == 1 and forest[-1].n_jobs == 1
        np.testing.assert_array_equal(km.predict(X), before)
    assert km._n_threads == 8 and forest[-1].n_jobs == -1


def test_task_modules_name_what_a_worker_imports_for_the_blocks() -> None:
    from sklearn.cluster import KMeans
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geoensemble.predict.models import task_modules

    mods = task_modules([make_pipeline(StandardScaler(), KMeans(3)), RandomForestClassifier()])
    assert mods == [
        "geoensemble.predict.blocks",
        "geoensemble.predict.combine",
        "geoensemble.io.stack",
        "zarr",
        "sklearn.preprocessing._data",
        "sklearn.cluster._kmeans",
        "sklearn.ensemble._forest",
    ]


def test_task_modules_never_name_the_main_script() -> None:
    from geoensemble.predict.models import task_modules

    class Local:  # a model class of a script: its module is __main__ here
        pass

    Local.__module__ = "__main__"
    assert "__main__" not in task_modules([Local()])


def test_an_ensemble_that_registered_nothing_predicts_from_its_logged_models(
    make_cfg, store: TrackingConfig
) -> None:
    """An experiment, a sweep or a hand run registers only on request: predict.ensemble
    then takes the models its kept members logged (models:/<model id>), best rank first,
    and they predict as the fitted estimators do."""
    from geoensemble.app.tracker import tracker_for

    ests = [fit_kmeans(NAMES, k) for k in (4, 3)]
    tracker = tracker_for(store)
    exp = tracker.open()
    example = np.zeros((3, len(NAMES)), dtype=np.float32)
    with tracker.parent_run(exp, run_name="hand-run", params={}, tags={"by": "hand"}) as parent:
        for rank, est in ((2, ests[0]), (1, ests[1])):  # logged worst first
            run = tracker.log_child_run(
                exp, parent, run_name=f"member-{rank}", params={}, metrics={}, tags={}
            )
            logged = tracker.log_member_model(
                run,
                est,
                feature_names=NAMES,
                example=example,
                model_name=store.model_name,
                tags={"ensemble_run_id": parent, "rank": str(rank)},
                register=False,
            )
            assert logged.version is None
    ms = resolve_members(make_cfg(f"predict.ensemble={parent}"), tracker)
    assert [m.uri.startswith("models:/m-") for m in ms] == [True, True]
    X, _ = valid_table(make_scene(), NAMES)
    for m, est in zip(ms, (ests[1], ests[0]), strict=True):  # best rank first
        np.testing.assert_array_equal(m.model.predict(X[:300]), est.predict(X[:300]))
