"""Clusters named after the same class merge, with the share recomputed by hand."""

from __future__ import annotations

from geoensemble.classes import class_colour, neutral_greys
from geoensemble.predict.classmap import merge_by_class


def test_merge_by_class_recomputes_the_shares_of_merged_clusters() -> None:
    clusters = [
        {"code": 0, "class": "water", "share": 0.9, "reference_pixels": 10},
        {"code": 1, "class": "water", "share": 0.8, "reference_pixels": 20},
        {"code": 2, "class": None, "share": 0.4, "reference_pixels": 50},
        {"code": 3, "class": "forest", "share": 1.0, "reference_pixels": 5},
        {"code": 4, "class": None, "share": 0.0, "reference_pixels": 0},
    ]
    m = merge_by_class(clusters)
    assert m is not None
    # water: (0.9 * 10 + 0.8 * 20) / 30 = 83.3 %
    assert m.classes == {
        0: ("forest (100 %)", class_colour("forest")),
        1: ("water (83 %)", class_colour("water")),
        2: ("cluster 2", neutral_greys(2)[0]),
        3: ("cluster 4", neutral_greys(2)[1]),
    }
    assert [int(m.lut[c]) for c in range(5)] == [1, 1, 2, 0, 3]
    assert m.lut[255] == 255
    assert m.members == {"forest": [3], "water": [0, 1]}
    assert merge_by_class([{"code": 0, "class": None, "share": 0.3, "reference_pixels": 9}]) is None
