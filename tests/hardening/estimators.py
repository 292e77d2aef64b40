"""A K-Means member that can crash or stall its dask worker, to test fault handling.

It is importable by spawned worker processes (``tests`` is a package on ``sys.path``), and is
a plain scikit-learn estimator, so it goes through the real ensemble code path.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import MiniBatchKMeans


class FaultyKMeans(ClusterMixin, BaseEstimator):
    """MiniBatchKMeans that, when ``n_clusters == crash_k``, SIGKILLs its own process, and
    that writes ``started-<pid>-<k>`` into ``marker_dir`` then sleeps ``delay`` s in ``fit``."""

    def __init__(
        self,
        n_clusters: int = 8,
        batch_size: int = 1024,
        n_init: int = 3,
        max_iter: int = 100,
        random_state: int | None = None,
        marker_dir: str | None = None,
        crash_k: int = -1,
        delay: float = 0.0,
    ) -> None:
        self.n_clusters = n_clusters
        self.batch_size = batch_size
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state
        self.marker_dir = marker_dir
        self.crash_k = crash_k
        self.delay = delay

    def fit(self, X: np.ndarray, y: Any = None) -> FaultyKMeans:
        if self.marker_dir:
            mark = Path(self.marker_dir) / f"started-{os.getpid()}-{self.n_clusters}"
            mark.write_text(str(os.getpid()))
        if self.n_clusters == self.crash_k:
            os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer would do
        time.sleep(self.delay)
        km = MiniBatchKMeans(
            n_clusters=self.n_clusters,
            batch_size=self.batch_size,
            n_init=self.n_init,
            max_iter=self.max_iter,
            random_state=self.random_state,
        ).fit(X)
        self.cluster_centers_ = km.cluster_centers_
        self.labels_ = km.labels_
        self.inertia_ = km.inertia_
        self._km = km
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._km.predict(X))


class SlowModel:
    """A fitted model whose every ``predict`` call sleeps ``delay`` s first, so that a
    prediction lasts long enough to be killed mid-write."""

    def __init__(self, model: Any, delay: float) -> None:
        self.model = model
        self.delay = delay

    def predict(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return np.asarray(self.model.predict(X))

    def __getattr__(self, name: str) -> Any:
        # n_clusters etc. of the wrapped model (predict asks how many classes it outputs)
        if name in ("model", "delay"):
            raise AttributeError(name)
        return getattr(self.model, name)
