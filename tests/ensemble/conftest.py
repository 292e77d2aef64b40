"""Fixtures of the ensemble tests: an in-process dask client and a sample of six blobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from geoensemble.compute import Cluster, dask_client


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with dask_client(Cluster(n_workers=1, processes=False)) as c:
        yield c


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(6, 11))
    return np.concatenate([rng.normal(c, 1.0, size=(250, 11)) for c in centres]).astype(np.float32)
