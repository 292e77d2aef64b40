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


def test_reports_round_floats_so_a_rerun_writes_the_same_bytes(tmp_path: Path) -> None:
    """Two sums of the same numbers in another order differ in the last digit; the report
    written from either is the same file (what keeps git clean after a fresh `dvc repro`)."""
    from geoensemble.io.atomic import REPORT_DIGITS, write_report

    a = 0.1 + 0.2 + 0.3
    b = 0.3 + 0.2 + 0.1
    assert a != b  # 0.6000000000000001 and 0.6
    one = write_report(tmp_path / "a.json", {"aic": a, "k": 7, "f": [np.float32(1 / 3), None]})
    two = write_report(tmp_path / "b.json", {"aic": b, "k": 7, "f": [np.float32(1 / 3), None]})
    assert one.read_bytes() == two.read_bytes()
    back = json.loads(one.read_text())
    assert back == {"aic": 0.6, "k": 7, "f": [0.3333333433, None]}
    assert REPORT_DIGITS == 10
    assert json.loads(
        write_report(tmp_path / "c.json", {"aic": -123456.789012345}).read_text()
    ) == {"aic": -123456.789}
