"""The workflow of a notebook, run as a script: a transformer class defined in ``__main__``, a
``make_pipeline`` of it and scikit-learn steps, an :class:`EnsembleSearch` over 2 generations
on a dask ``LocalCluster`` of 2 worker processes, then every member predicting a raster table.

Members reach the workers by dask's (cloud)pickle, so the ``__main__`` class needs no module.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run

pytestmark = pytest.mark.integration

# What both notebook scripts share: the imports and a step defined in the notebook itself.
NOTEBOOK_STEP = textwrap.dedent(
    """
    import json

    import numpy as np
    from distributed import Client, LocalCluster
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler


    class LogT(BaseEstimator, TransformerMixin):
        # a notebook cell's own step: log of the (non-negative) reflectances
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.log1p(np.clip(X, 0, None))
    """
)

SCRIPT = NOTEBOOK_STEP + textwrap.dedent(
    """
    from geoensemble.api import EnsembleSearch


    def raster_table(rows, cols, seed):
        # (rows * cols, 4) band values of three land covers in horizontal stripes
        rng = np.random.default_rng(seed)
        cover = np.repeat(np.arange(3), rows * cols // 3 + 1)[: rows * cols]
        means = np.array(
            [[0.05, 0.08, 0.04, 0.30], [0.10, 0.12, 0.15, 0.20], [0.30, 0.28, 0.32, 0.35]]
        )
        return means[cover] + rng.normal(0, 0.01, (rows * cols, 4))


    if __name__ == "__main__":
        X = raster_table(30, 30, seed=0)
        pipe = make_pipeline(
            LogT(), StandardScaler(), PCA(n_components=2), MiniBatchKMeans(n_init=1)
        )
        space = {"minibatchkmeans__n_clusters": [2, 3, 4, 5, 6], "pca__n_components": [2, 3]}
        with LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            search = EnsembleSearch(
                pipe, space, n_members=3, generations=2, keep=3, random_state=0, client=client
            ).fit(X)
            workers = len(client.scheduler_info()["workers"])
        scene = raster_table(20, 25, seed=1)
        members = []
        for member in search.members_:
            labels = member.predict(scene)
            members.append(
                {
                    "n_clusters": int(member[-1].n_clusters),
                    "labels": sorted(int(v) for v in np.unique(labels)),
                    "n_pixels": int(labels.size),
                    "main_class": type(member[0]) is LogT,
                }
            )
        print(
            json.dumps(
                {
                    "workers": workers,
                    "members": members,
                    "generation": search.cv_results_["generation"].tolist(),
                    "params": [
                        {k: int(v) for k, v in p.items()} for p in search.cv_results_["params"]
                    ],
                    "best": {k: int(v) for k, v in search.best_params_.items()},
                }
            )
        )
    """
)


def test_a_notebook_script_fits_on_a_two_process_cluster_and_predicts_every_member(
    tmp_path: Path,
) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    # cwd=tmp_path: the workers' scratch space stays out of the checkout
    proc = run([sys.executable, str(script)], tmp_path, timeout=240, OMP_NUM_THREADS="1")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["workers"] == 2
    assert sorted(set(out["generation"])) == [0, 1]
    assert out["generation"].count(0) == 3
    assert len(out["members"]) == 3
    for m in out["members"]:
        assert m["main_class"]  # a fitted member comes back as the script's own LogT
        assert m["n_pixels"] == 20 * 25
        assert set(m["labels"]) <= set(range(m["n_clusters"]))
        assert len(m["labels"]) >= 2
    params = out["params"]
    assert len(params) == len(out["generation"])
    assert len({tuple(sorted(p.items())) for p in params}) == len(params)  # no member twice
    assert all(2 <= p["minibatchkmeans__n_clusters"] <= 6 for p in params)
    assert out["best"] in params
    assert out["members"][0]["n_clusters"] == out["best"]["minibatchkmeans__n_clusters"]
