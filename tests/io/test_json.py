"""Reports are strict JSON: no bare NaN, numpy values as plain numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geoensemble.io.atomic import write_json


def test_nan_and_infinity_are_written_as_null(tmp_path: Path) -> None:
    obj = {
        "kappa": float("nan"),
        "f1": np.float32(np.nan),
        "ratio": np.inf,
        "per_class": [{"recall": np.float64(0.5)}, {"recall": float("-inf")}],
        "counts": np.array([1, 2]),
        "rates": np.array([0.25, np.nan]),
        "path": tmp_path,
        2: "int key",
    }
    out = write_json(tmp_path / "evaluation.json", obj)
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert back == {
        "kappa": None,
        "f1": None,
        "ratio": None,
        "per_class": [{"recall": 0.5}, {"recall": None}],
        "counts": [1, 2],
        "rates": [0.25, None],
        "path": str(tmp_path),
        "2": "int key",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]
