"""EnsembleSearch: a scikit-learn meta-estimator over generations of members."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats as st
from distributed import Client, LocalCluster
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from geoensemble.ensemble.metasearch import EnsembleSearch
from geoensemble.ensemble.scoring import common_space, partition_information

# scikit-learn checks not run against the search, each with why. Every other check of the
# estimators in test_sklearn_estimator_checks passes (KMeans under aic; a tree classifier and
# Ridge under a scorer with cv).
SKIPPED_CHECKS: dict[str, str] = {
    "check_array_api_input": (
        "the search declares no array API support (nor do KMeans, trees or Ridge), and "
        "scikit-learn runs it only with SCIPY_ARRAY_API=1 and array-api-strict installed"
    ),
}

K_GRID = [2, 3, 4, 5, 6]


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Three well-separated Gaussian blobs in 3-D, 240 points."""
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 5.0], [0.0, 10.0, -5.0]])
    X, _ = make_blobs(240, centers=centres, cluster_std=0.6, random_state=3)
    return np.asarray(X)


def kmeans_search(**kw: Any) -> EnsembleSearch:
    """Scale + K-Means over ``kmeans__n_clusters`` in 2..6 (``kw`` overrides any argument)."""
    args: dict[str, Any] = {
        "estimator": make_pipeline(StandardScaler(), KMeans(n_init=3)),
        "param_distributions": {"kmeans__n_clusters": K_GRID},
        "n_members": 3,
        "generations": 2,
        "keep": 3,
        "random_state": 0,
    }
    args.update(kw)
    return EnsembleSearch(**args)


def test_aic_picks_the_three_blobs_and_keeps_the_best_members_first(blobs: np.ndarray) -> None:
    search = kmeans_search(n_members=5, generations=1).fit(blobs)
    res = search.cv_results_
    assert sorted(res["param_kmeans__n_clusters"].tolist()) == K_GRID
    assert search.best_params_ == {"kmeans__n_clusters": 3}
    assert search.score_name_ == "aic"
    # the value is the common-space partition AIC of scoring.py, lowest = rank 1
    labels = search.best_estimator_.predict(blobs)
    expected = partition_information(common_space(blobs), labels)["aic"]
    assert search.best_score_ == pytest.approx(expected)
    assert res["aic"][search.best_index_] == pytest.approx(expected)
    assert res["rank"][search.best_index_] == 1
    assert sorted(res["rank"].tolist()) == [1, 2, 3, 4, 5]
    kept = [m[-1].n_clusters for m in search.members_]
    order = np.argsort(res["aic"], kind="stable")[:3]
    assert kept == [res["param_kmeans__n_clusters"][i] for i in order]
    assert search.best_estimator_ is search.members_[0]
    assert search.n_features_in_ == 3
    assert search.predict(blobs).shape == (240,)


def test_bic_is_named_bic_and_ranks_lowest_first(blobs: np.ndarray) -> None:
    search = kmeans_search(criterion="bic", n_members=5, generations=1).fit(blobs)
    assert "bic" in search.cv_results_ and "aic" not in search.cv_results_
    assert search.best_params_ == {"kmeans__n_clusters": 3}
    assert search.best_score_ == search.cv_results_["bic"].min()


def test_cv_results_has_one_row_per_member_over_generations(blobs: np.ndarray) -> None:
    search = kmeans_search().fit(blobs)
    res = search.cv_results_
    assert res["generation"].tolist() == [0, 0, 0, 1, 1]  # the 5-value grid runs out
    for key in ("param_kmeans__n_clusters", "params", "mean_fit_time", "aic", "rank"):
        assert len(res[key]) == 5, key
    assert isinstance(res["param_kmeans__n_clusters"], np.ma.MaskedArray)
    assert [p["kmeans__n_clusters"] for p in res["params"]] == list(res["param_kmeans__n_clusters"])
    assert len({p["kmeans__n_clusters"] for p in res["params"]}) == 5  # none fitted twice
    assert (res["mean_fit_time"] > 0).all()
    assert len(search.members_) == 3


def test_list_of_dicts_gives_masked_parameter_columns(blobs: np.ndarray) -> None:
    space: list[dict[str, Any]] = [
        {"kmeans__n_clusters": [3]},
        {"kmeans__n_clusters": [2], "kmeans__tol": [1e-3]},
    ]
    pipe = make_pipeline(StandardScaler(), KMeans(n_init=1))
    search = EnsembleSearch(pipe, space, n_members=2, generations=1, random_state=0).fit(blobs)
    tol = search.cv_results_["param_kmeans__tol"]
    k = search.cv_results_["param_kmeans__n_clusters"]
    assert tol.mask.tolist() == [k_ == 3 for k_ in k.tolist()]


def test_same_random_state_same_results_and_seeds_fill_unset_random_states(
    blobs: np.ndarray,
) -> None:
    pipe = make_pipeline(PCA(n_components=2, random_state=5), KMeans(n_init=1))
    space = {"kmeans__n_clusters": st.randint(2, 7)}

    def fit(seed: int) -> EnsembleSearch:
        return EnsembleSearch(pipe, space, n_members=3, random_state=seed).fit(blobs)

    a, b, c = fit(7), fit(7), fit(8)
    assert a.cv_results_["params"] == b.cv_results_["params"]
    np.testing.assert_array_equal(a.cv_results_["aic"], b.cv_results_["aic"])
    seeds = [m.get_params()["kmeans__random_state"] for m in a.members_]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == len(seeds)
    assert seeds == [m.get_params()["kmeans__random_state"] for m in b.members_]
    assert seeds != [m.get_params()["kmeans__random_state"] for m in c.members_]
    assert {m.get_params()["pca__random_state"] for m in a.members_} == {5}  # set by the user
    assert pipe.get_params()["kmeans__random_state"] is None  # the template is not touched


def test_nsga2_proposes_new_members_and_restores_optuna_logging(blobs: np.ndarray) -> None:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        search = kmeans_search(
            sampler="nsga2",
            n_members=3,
            generations=3,
            param_distributions={"kmeans__n_clusters": st.randint(2, 9), "kmeans__tol": [1e-4]},
        ).fit(blobs)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)
    res = search.cv_results_
    assert set(res["generation"].tolist()) == {0, 1, 2}
    ks = res["param_kmeans__n_clusters"].tolist()
    assert len(set(ks)) == len(ks) and all(2 <= k <= 8 for k in ks)
    assert all(isinstance(k, int) for k in ks)
    assert set(res["param_kmeans__tol"].tolist()) == {1e-4}
    assert list(res["params"][0]) == ["kmeans__n_clusters", "kmeans__tol"]  # as given
    again = clone(search).fit(blobs)
    assert again.cv_results_["params"] == res["params"]


@pytest.fixture(scope="module")
def labelled() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(150, n_features=5, n_informative=3, random_state=0)
    return X, y


def test_scorer_criterion_is_the_mean_over_the_cv_folds(
    labelled: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = labelled
    tree = DecisionTreeClassifier(random_state=0)
    search = EnsembleSearch(
        tree, {"max_depth": [1, 2, 4]}, n_members=3, generations=1, keep=2, criterion="accuracy"
    ).fit(X, y)
    res = search.cv_results_
    assert search.score_name_ == "mean_test_accuracy" and search.n_splits_ == 5
    for i, params in enumerate(res["params"]):
        folds = cross_val_score(
            clone(tree).set_params(**params), X, y, cv=StratifiedKFold(5), scoring="accuracy"
        )
        assert res["mean_test_accuracy"][i] == pytest.approx(folds.mean())
        assert res["std_test_accuracy"][i] == pytest.approx(folds.std())
    assert search.best_score_ == res["mean_test_accuracy"].max()
    assert res["rank"][int(np.argmax(res["mean_test_accuracy"]))] == 1
    np.testing.assert_array_equal(search.classes_, [0, 1])
    assert search.predict_proba(X).shape == (150, 2)
    assert len(search.members_) == 2


def test_callable_criterion_higher_is_better(labelled: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = labelled

    def minus_coef_norm(est: Any, X: Any, y: Any) -> float:
        return -float(np.abs(est.coef_).sum())

    search = EnsembleSearch(
        LogisticRegression(),
        {"C": [0.001, 1.0, 100.0]},
        n_members=3,
        generations=1,
        criterion=minus_coef_norm,
        cv=3,
    ).fit(X, y)
    assert search.score_name_ == "mean_test_score"
    assert search.best_params_ == {"C": 0.001}  # the smallest coefficients


def test_clone_get_params_and_pickle_share_or_drop_the_client(blobs: np.ndarray) -> None:
    class Handle:  # like a dask Client: a live connection that cannot be deep-copied
        lock = threading.Lock()

        def __deepcopy__(self, memo: Any) -> Any:
            raise TypeError("cannot pickle '_asyncio.Task' object")

    handle = Handle()
    search = kmeans_search(client=handle)
    with pytest.raises(TypeError):
        copy.deepcopy(handle)
    twin = clone(search)
    assert twin is not search and twin.client is handle
    assert twin.estimator is not search.estimator
    assert twin.get_params(deep=False).keys() == search.get_params(deep=False).keys()
    assert twin.get_params()["estimator__kmeans__n_init"] == 3
    restored = pickle.loads(pickle.dumps(search))
    assert restored.client is None and restored.n_members == 3
    fitted = kmeans_search(n_members=2, generations=1).fit(blobs)
    assert not hasattr(clone(fitted), "best_estimator_")
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(blobs), fitted.predict(blobs))


def test_runs_inside_cross_val_score_and_as_a_pipeline_step(
    blobs: np.ndarray, labelled: tuple[np.ndarray, np.ndarray]
) -> None:
    search = EnsembleSearch(
        KMeans(n_init=1), {"n_clusters": [2, 3, 4]}, n_members=3, generations=1, random_state=0
    )
    scores = cross_val_score(search, blobs, cv=3)  # the best member's score: -inertia
    assert scores.shape == (3,) and (scores < 0).all()
    pipe = make_pipeline(StandardScaler(), search).fit(blobs)
    assert pipe[-1].best_params_ == {"n_clusters": 3}
    assert set(np.unique(pipe.predict(blobs))) == {0, 1, 2}
    X, y = labelled
    clf = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "search",
                EnsembleSearch(
                    LogisticRegression(),
                    {"C": [0.01, 1.0]},
                    n_members=2,
                    generations=1,
                    criterion="neg_log_loss",
                    cv=3,
                ),
            ),
        ]
    )
    acc = cross_val_score(clf, X, y, cv=3)
    assert acc.shape == (3,) and (acc > 0.6).all()


def test_a_dataframe_keeps_its_column_names_for_the_members(blobs: np.ndarray) -> None:
    df = pd.DataFrame(blobs, columns=["red", "nir", "swir"])
    search = kmeans_search(n_members=2, generations=1).fit(df)
    np.testing.assert_array_equal(search.feature_names_in_, ["red", "nir", "swir"])
    np.testing.assert_array_equal(search.best_estimator_.feature_names_in_, df.columns)
    assert search.predict(df).shape == (240,)


def test_delegated_methods_follow_the_estimator(blobs: np.ndarray) -> None:
    search = kmeans_search(n_members=2, generations=1)
    assert not hasattr(search, "predict_proba") and hasattr(search, "transform")
    with pytest.raises(AttributeError, match="not fitted"):
        search.predict(blobs)
    labels = search.fit_predict(blobs)
    np.testing.assert_array_equal(labels, search.predict(blobs))
    assert search.transform(blobs).shape == (240, search.best_params_["kmeans__n_clusters"])
    assert not hasattr(EnsembleSearch(Ridge(), {}, criterion="r2"), "transform")


CALLS: list[int] = []


class Fragile(ClusterMixin, BaseEstimator):
    """A clusterer whose fit raises for ``k=0`` (and counts its fits)."""

    def __init__(self, k: int = 2) -> None:
        self.k = k

    def fit(self, X: Any, y: Any = None) -> Fragile:
        CALLS.append(self.k)
        if self.k == 0:
            raise ValueError("k=0 is not a number of clusters")
        self.labels_ = np.arange(len(X)) % self.k
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.arange(len(X)) % self.k


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A dask client of one in-process worker with two threads."""
    with (
        LocalCluster(
            n_workers=1, processes=False, threads_per_worker=2, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.mark.parametrize("on_client", [False, True], ids=["in_process", "client"])
def test_a_failing_member_raises_once_with_its_params(
    blobs: np.ndarray, on_client: bool, request: pytest.FixtureRequest
) -> None:
    client = request.getfixturevalue("client") if on_client else None
    CALLS.clear()
    search = EnsembleSearch(
        Fragile(), {"k": [0]}, n_members=1, generations=2, random_state=0, client=client
    )
    with pytest.raises(ValueError, match=r"k=0 is not .*member 0, params \{'k': 0\}"):
        search.fit(blobs)
    assert CALLS == [0]  # no retry


def test_the_client_gives_the_in_process_results(blobs: np.ndarray, client: Client) -> None:
    here = kmeans_search().fit(blobs)
    there = kmeans_search(client=client).fit(blobs)
    assert there.cv_results_["params"] == here.cv_results_["params"]
    np.testing.assert_allclose(there.cv_results_["aic"], here.cv_results_["aic"])
    np.testing.assert_array_equal(there.predict(blobs), here.predict(blobs))
    assert there.client is client  # still usable for the next fit


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_members": 0}, r"n_members=0 must be an integer >= 1"),
        ({"keep": 1.5}, r"keep=1.5 must be an integer"),
        ({"sampler": "grid"}, r"sampler='grid' must be one of random, nsga2"),
        ({"criterion": "accurracy"}, r"criterion='accurracy' is neither"),
        ({"cv": 3}, r"cv=3 is not used by criterion='aic'"),
        (
            {"sampler": "nsga2", "param_distributions": {"kmeans__tol": st.norm()}},
            r"param_distributions\['kmeans__tol'\] has the unbounded support",
        ),
        (
            {"sampler": "nsga2", "param_distributions": [{"kmeans__n_clusters": [2]}]},
            r"param_distributions must be one dict",
        ),
    ],
)
def test_bad_arguments_name_the_argument(
    blobs: np.ndarray, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        kmeans_search(**kwargs).fit(blobs)


def test_aic_refuses_a_supervised_estimator(labelled: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = labelled
    with pytest.raises(ValueError, match=r"criterion='aic' scores a clusterer's partition"):
        EnsembleSearch(LogisticRegression(), {"C": [1.0]}).fit(X, y)
    with pytest.raises(TypeError, match=r"criterion=3 must be"):
        EnsembleSearch(LogisticRegression(), {"C": [1.0]}, criterion=3).fit(X, y)  # type: ignore[arg-type]


@parametrize_with_checks(
    [
        EnsembleSearch(
            KMeans(n_init=1), {"n_clusters": [2, 3]}, n_members=2, keep=1, random_state=0
        ),
        EnsembleSearch(
            DecisionTreeClassifier(),
            {"max_depth": [2, None]},
            n_members=2,
            generations=1,
            keep=1,
            criterion="accuracy",
            cv=2,
            random_state=0,
        ),
        EnsembleSearch(
            Ridge(), {"alpha": [0.1, 1.0]}, n_members=2, generations=1, criterion="r2", cv=2
        ),
    ],
    expected_failed_checks=lambda est: SKIPPED_CHECKS,
)
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)
