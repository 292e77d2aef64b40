"""Area-weighted accuracy against the worked example of Olofsson et al. (2014)."""

from __future__ import annotations

import numpy as np
import pytest

from geoensemble.ensemble.assessment import Z95, area_weighted_accuracy, error_matrix

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


def test_olofsson_every_class_matches_the_published_table() -> None:
    """Olofsson et al. (2014), section 5 (their tables 8-9): per-class user's and producer's
    accuracies and the areas (ha) with 95 % intervals, as published (rounded)."""
    r = area_weighted_accuracy(COUNTS, MAPPED, pixel_area=0.09)
    users = [0.88, 0.73, 0.93, 0.96]
    users_ci = [0.07, 0.10, 0.04, 0.02]
    producers = [0.75, 0.85, 0.93, 0.96]
    areas = [21_158, 11_686, 285_770, 581_386]
    areas_ci = [6_158, 3_756, 15_510, 16_282]
    for k in range(4):
        assert round(r["users_accuracy"][k], 2) == users[k]
        assert round(1.96 * r["users_accuracy_se"][k], 2) == users_ci[k]
        assert round(r["producers_accuracy"][k], 2) == producers[k]
        assert round(r["area"][k]) == areas[k]
        # the paper multiplies by 1.96 (we use 1.959964)
        assert round(r["area_ci95"][k] * 1.96 / Z95) == areas_ci[k]
        # proportions of the total area: area / (A = 10,000,000 px x 0.09 ha)
        assert r["area_proportion"][k] == pytest.approx(areas[k] / 900_000, abs=1e-6)
    assert round(r["overall_accuracy"], 2) == 0.95 and round(r["overall_accuracy_ci95"], 2) == 0.02
