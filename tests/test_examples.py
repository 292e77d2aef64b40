"""The example notebook runs top to bottom (so it cannot rot) and is committed without outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "examples" / "landsat_walkthrough.ipynb"


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_walkthrough_runs_and_writes_only_into_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    import rasterio

    work = tmp_path / "walkthrough"
    # the kernel inherits the environment: its paths, Jupyter's and IPython's files go here
    monkeypatch.setenv("GEOENSEMBLE_WALKTHROUGH_DIR", str(work))
    monkeypatch.setenv("GEOENSEMBLE_WALKTHROUGH_SIZE", "256")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert time.perf_counter() - t0 < 60
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # no warning (e.g. tqdm's IProgress one, or a chosen value at the edge of the space)
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, stderr
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # band, RGB, maps
    # the history and the scores are tables, not lists of dicts
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    history = next(t for t in tables if "best aic so far" in t)
    assert "<table" in history and "improved" in history
    scores = next(t for t in tables if "member-" in t and ">aic<" in t)
    assert "<table" in scores and ">n_clusters<" in scores
    # the maps have legends of class names
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert any("2 Axes" in o["data"]["text/plain"] for o in figures)
    legend = next(t for t in tables if "best member" in t and ">vote<" in t)
    assert "water (" in legend
    with rasterio.open(work / "vote.tif") as src:
        assert src.crs.to_epsg() == 32613 and src.nodata == 255 and src.shape == (256, 256)
        names = json.loads(src.tags()["class_names"])
    assert "water" in " ".join(names.values())
    assert all(
        n.startswith(("water", "forest", "cropland", "bare_soil", "built_up", "snow", "cluster"))
        for n in names.values()
    ), names
    left = {p.name for p in tmp_path.iterdir()}
    assert "walkthrough" in left and left <= {"ipython", "jupyter", "walkthrough"}
