"""Member scores against cases worked by hand: the partition criterion in the common space,
the supervised held-out scores, and the refusals of scores that are not comparable."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline

from geoensemble.ensemble.scoring import (
    check_comparable,
    common_space,
    kmeans_information,
    partition_information,
    score_unsupervised,
)
from geoensemble.errors import ConfigError


def test_kmeans_aic_worked_by_hand() -> None:
    # Two clusters on a line: {0, 2} around 1 and {10, 12} around 11.
    X = np.array([[0.0], [2.0], [10.0], [12.0]])
    out = kmeans_information(X, np.array([0, 0, 1, 1]), np.array([[1.0], [11.0]]))
    # inertia 4, s2 = 4 / (4 * 1) = 1
    # LL = 2 log(1/2) + 2 log(1/2) - (4 / 2) (log(2 pi) + 1) = -8.448342...
    # p = k (d + 1) = 4 ; AIC = 8 + 16.896685... ; BIC = 4 log 4 + 16.896685...
    assert out["inertia"] == pytest.approx(4.0)
    assert out["log_likelihood"] == pytest.approx(
        4 * math.log(0.5) - 2 * (math.log(2 * math.pi) + 1)
    )
    assert out["log_likelihood"] == pytest.approx(-8.4483428, abs=1e-6)
    assert out["n_params"] == 4
    assert out["aic"] == pytest.approx(24.8966857, abs=1e-6)
    assert out["bic"] == pytest.approx(22.4418631, abs=1e-6)
    assert out["elm_aic"] == pytest.approx(4 + 2 * 1 * 2)


def test_more_clusters_than_structure_are_penalised() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=(300, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    aic = {}
    for k in (2, 3, 12):
        pipe = Pipeline([("model", KMeans(k, n_init=3, random_state=0))]).fit(X)
        aic[k] = score_unsupervised(pipe, X)["aic"]
    assert aic[3] < aic[2]
    assert aic[3] < aic[12]


def test_gaussian_mixture_own_space_aic_worked_by_hand() -> None:
    from sklearn.mixture import GaussianMixture

    # One component on {0, 2}: mean 1, variance 1; LL = 2 log N(0 | 1, 1) = -log(2 pi) - 1;
    # parameters: one mean and one variance, so AIC = 2 * 2 - 2 LL, BIC = 2 log 2 - 2 LL.
    X = np.array([[0.0], [2.0]])
    pipe = Pipeline([("model", GaussianMixture(1, reg_covar=0.0, random_state=0))]).fit(X)
    out = score_unsupervised(pipe, X)
    ll = -math.log(2 * math.pi) - 1
    assert out["member_space_log_likelihood"] == pytest.approx(ll)
    assert out["member_space_aic"] == pytest.approx(4 - 2 * ll)
    assert out["member_space_bic"] == pytest.approx(2 * math.log(2) - 2 * ll)
    # ... and its partition (one cluster) in the common space: z = (-1, 1), W = 2, s2 = 1,
    # LL = 2 log 1 - (2 / 2)(log(2 pi) + 1), p = 1 * (1 + 1) = 2.
    assert out["log_likelihood"] == pytest.approx(ll)
    assert out["aic"] == pytest.approx(4 - 2 * ll) and out["n_clusters"] == 1


def test_common_space_fills_nan_then_standardizes_by_hand() -> None:
    X = np.array([[1.0, 5.0], [np.nan, 5.0], [3.0, 5.0], [5.0, 5.0]])
    # median of column 0 = 3 -> (1, 3, 3, 5): mean 3, std sqrt(2); column 1 constant -> 0
    Z = common_space(X, impute="median")
    assert Z[:, 0] == pytest.approx(np.array([-2, 0, 0, 2]) / math.sqrt(2))
    assert Z[:, 1] == pytest.approx(np.zeros(4))
    # mean = 3 as well; constant 0 -> (1, 0, 3, 5): mean 2.25
    assert common_space(X, impute="constant")[1, 0] < common_space(X, impute="mean")[1, 0]


def test_partition_criterion_in_the_common_space_worked_by_hand() -> None:
    # Common space, d = 2: four points; the partition {0, 1} {2, 3}.
    Z = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    out = partition_information(Z, np.array([7, 7, 3, 3]))  # codes need not be 0..k-1
    # centres (-1, 0) and (1, 0): every residual is (0, +-1), W = 4, s2 = 4 / (4 * 2) = 1/2
    # LL = 2 * 2 log(1/2) - (4 * 2 / 2)(log(2 pi / 2) + 1) = 4 log(1/2) - 4 (log(pi) + 1)
    ll = 4 * math.log(0.5) - 4 * (math.log(math.pi) + 1)  # -2.772589 - 8.578920 = -11.351508
    assert out["inertia"] == pytest.approx(4.0)
    assert out["log_likelihood"] == pytest.approx(ll)
    assert out["log_likelihood"] == pytest.approx(-11.351508, abs=1e-6)
    assert out["n_params"] == 6  # k (d + 1) = 2 * 3
    assert out["aic"] == pytest.approx(12 - 2 * ll)
    assert out["bic"] == pytest.approx(6 * math.log(4) - 2 * ll)
    assert out["elm_aic"] == pytest.approx(4 + 2 * 2 * 2)
    assert out["n_clusters"] == 2


def test_members_with_different_pca_sizes_are_scored_on_the_same_points() -> None:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.5, size=(200, 6)) for c in (0.0, 3.0, 6.0)])
    Z = common_space(X)
    scores = {}
    for n in (1, 2, 5):
        pipe = Pipeline(
            [("scale", StandardScaler()), ("pca", PCA(n)), ("model", KMeans(3, random_state=0))]
        ).fit(X)
        scores[n] = score_unsupervised(pipe, X, Z)
        # the criterion of the member's partition, in the common space: same d, same n
        assert scores[n] == pytest.approx({**partition_information(Z, pipe.predict(X))})
    # Same partition (the three blobs) whatever the PCA size: same score, not ranked by size.
    assert scores[1]["aic"] == pytest.approx(scores[5]["aic"])
    assert scores[2]["n_params"] == 3 * (6 + 1)


@pytest.mark.parametrize(
    ("metric", "kind", "space", "per_member", "match"),
    [
        (
            "aic",
            "classifier",
            {},
            False,
            r"^criterion=aic is not defined for kind=classifier.*criterion=log_loss "
            r"direction=minimize, or criterion=kappa",
        ),
        ("bic", "regressor", {}, False, r"^criterion=bic is not defined.*criterion=rmse"),
        (
            "member_space_aic",
            "cluster",
            {"pca__n_components": [2, 3]},
            False,
            r"^criterion=member_space_aic.*pca__n_components.*rank by criterion=aic",
        ),
        ("member_space_bic", "cluster", {}, True, r"per-member samples \(per_member_sample\)"),
    ],
)
def test_scores_that_are_not_comparable_are_refused(
    metric: str, kind: str, space: dict, per_member: bool, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        check_comparable(
            [("criterion", metric)], kind=kind, space=space, per_member_sample=per_member
        )


def test_comparable_scores_are_accepted() -> None:
    check_comparable(
        [("criterion", "aic")],
        kind="cluster",
        space={"pca__n_components": [2]},
        per_member_sample=True,
    )
    check_comparable(
        [("criterion", "member_space_aic")],
        kind="cluster",
        space={"n_components": [2, 3], "model__tol": [0.1]},
        per_member_sample=False,
    )
    check_comparable(
        [("criterion", "log_loss")], kind="classifier", space={}, per_member_sample=False
    )


def test_classifier_heldout_penalized_nll_worked_by_hand() -> None:
    from geoensemble.ensemble.supervised import CrossValidation, classification_scores

    y = np.array([0, 1, 1])
    cv = CrossValidation(
        predictions=np.array([0, 1, 1]),
        probabilities=np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]]),
    )
    out = classification_scores(y, cv, np.array([0, 1]), n_params=3)
    ll = math.log(0.8) + math.log(0.6) + math.log(0.9)  # -0.8286...
    assert out["heldout_log_likelihood"] == pytest.approx(ll)
    assert out["log_loss"] == pytest.approx(-ll / 3)
    assert out["heldout_penalized_nll"] == pytest.approx(6 - 2 * ll)
    assert not {"aic", "bic", "log_likelihood"} & set(out)  # not an information criterion
    assert out["accuracy"] == 1.0 and out["kappa"] == 1.0 and out["f1_macro"] == 1.0


def test_regressor_heldout_penalized_nll_worked_by_hand() -> None:
    from geoensemble.ensemble.supervised import CrossValidation, regression_scores

    y = np.array([1.0, 2.0, 3.0])
    out = regression_scores(y, CrossValidation(np.array([1.0, 2.0, 4.0]), None), n_params=2)
    # MSE 1/3; LL = -(3/2)(log(2 pi / 3) + 1); p = 2 + 1 (the variance).
    ll = -1.5 * (math.log(2 * math.pi / 3) + 1)
    assert out["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert out["mae"] == pytest.approx(1 / 3)
    assert out["r2"] == pytest.approx(1 - 1 / 2)
    assert out["heldout_penalized_nll"] == pytest.approx(6 - 2 * ll)
    assert out["heldout_log_likelihood"] == pytest.approx(ll)
    assert out["n_params"] == 3 and "aic" not in out


def test_parameter_counts_per_family() -> None:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    from geoensemble.ensemble.supervised import n_parameters

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)  # 3 classes
    lr = LogisticRegression(max_iter=500).fit(X, y)
    assert n_parameters(lr, n_features=4, n_classes=3) == (15.0, "linear")  # 3 x 4 + 3
    tree = DecisionTreeClassifier(max_leaf_nodes=5, random_state=0).fit(X, y)
    assert n_parameters(tree, n_features=4, n_classes=3) == (tree.get_n_leaves() * 2, "tree")
    rf = RandomForestClassifier(4, max_leaf_nodes=6, random_state=0).fit(X, y)
    leaves = np.mean([t.get_n_leaves() for t in rf.estimators_])
    assert n_parameters(rf, n_features=4, n_classes=3) == (leaves * 2, "forest")
    yb = (X[:, 0] > 0).astype(int)
    gb = GradientBoostingClassifier(n_estimators=3, max_depth=1, random_state=0).fit(X, yb)
    leaves = sum(t.get_n_leaves() for t in gb.estimators_.ravel())  # 3 stumps
    assert n_parameters(gb, n_features=4, n_classes=2) == (leaves + 1, "boosting")
    knn = KNeighborsClassifier().fit(X, y)
    assert n_parameters(knn, n_features=4, n_classes=3) == (10.0, "other")  # (4 + 1) x 2


def test_supervised_members_are_scored_on_held_out_blocks() -> None:
    from sklearn.linear_model import LogisticRegression

    from geoensemble.ensemble.folds import spatial_folds
    from geoensemble.ensemble.supervised import score_supervised

    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 100, 400), rng.integers(0, 100, 400)
    y = (cols > 50).astype(int)
    X = np.stack([cols / 100 + rng.normal(0, 0.05, 400), rng.normal(size=400)], axis=1)
    folds = spatial_folds(rows, cols, n_folds=4, block_size=10, seed=0)
    pipe = Pipeline([("model", LogisticRegression())])
    fitted, scores, family = score_supervised(pipe, X, y, folds, kind="classifier")
    assert family == "linear" and scores["n_params"] == 3  # binary: 2 coefficients + 1
    assert scores["accuracy"] > 0.9 and scores["kappa"] > 0.8
    assert scores["heldout_penalized_nll"] == pytest.approx(
        2 * 3 - 2 * scores["heldout_log_likelihood"]
    )
    assert fitted.predict(X[:3]).shape == (3,)
