"""Area-weighted accuracy against the worked example of Olofsson et al. (2014)."""

from __future__ import annotations

import numpy as np
import pytest

from geoensemble.ensemble.assessment import area_weighted_accuracy, error_matrix

# Olofsson et al. 2014, section 5: strata deforestation, forest gain, stable forest, stable
# non-forest; sample counts (map in rows) and mapped 30 m pixels (0.09 ha each).
COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAPPED = np.array([200_000, 150_000, 3_200_000, 6_450_000])


def test_olofsson_worked_example() -> None:
    r = area_weighted_accuracy(COUNTS, MAPPED, pixel_area=0.09)
    # Published: overall accuracy 0.95 +- 0.02, deforestation 21,158 +- 6,158 ha,
    # user's 0.88 +- 0.07 and producer's 0.75 +- 0.21 for deforestation.
    assert r["overall_accuracy"] == pytest.approx(0.9465, abs=5e-4)
    assert r["overall_accuracy_ci95"] == pytest.approx(0.0185, abs=5e-4)
    assert r["area"][0] == pytest.approx(21_158, abs=1)
    assert r["area_ci95"][0] == pytest.approx(6_158, abs=1)
    assert r["users_accuracy"][0] == pytest.approx(0.88)
    assert 1.96 * r["users_accuracy_se"][0] == pytest.approx(0.074, abs=1e-3)
    assert r["producers_accuracy"][0] == pytest.approx(0.7487, abs=1e-4)
    assert 1.96 * r["producers_accuracy_se"][0] == pytest.approx(0.213, abs=1e-3)
    assert r["producers_accuracy"][1] == pytest.approx(0.8472, abs=1e-4)
    assert sum(r["area"]) == pytest.approx(sum(r["mapped_area"]))
    assert r["unsampled_map_classes"] == 0


def test_perfect_map_has_zero_uncertainty_and_flags_unsampled_classes() -> None:
    counts = np.diag([10, 20, 0])
    r = area_weighted_accuracy(counts, np.array([100, 300, 50]))
    assert r["overall_accuracy"] == pytest.approx(400 / 450)  # the unsampled class counts wrong
    assert r["overall_accuracy_se"] == 0.0
    assert r["unsampled_map_classes"] == 1


def test_error_matrix_puts_map_in_rows() -> None:
    m = error_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), np.array([0, 1, 2]))
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
