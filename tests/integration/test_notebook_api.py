"""The elm walkthrough as a notebook would run it, through the xarray API: a transformer class
of the notebook's own (``__main__``), ``make_pipeline(MyStep(), StandardScaler(), PCA(),
MiniBatchKMeans())`` fitted over 2 generations on a ``LocalCluster`` of 2 processes, every
member predicted and written; then a ``RandomForestClassifier`` on polygon labels drawn with
``rasterize_labels`` (polygons in another CRS than the scene)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import rasterio

from tests.conftest import run
from tests.integration.test_notebook_workflow import NOTEBOOK_STEP

pytestmark = pytest.mark.integration

SCRIPT = NOTEBOOK_STEP + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import geopandas as gpd
    from shapely.geometry import box
    from sklearn.ensemble import RandomForestClassifier

    import geoensemble as ge
    from geoensemble.synthetic import write_scene


    if __name__ == "__main__":
        out = Path(sys.argv[1])
        write_scene(out, width=96, height=80, n_points=40)
        feats = ge.featurize(ge.load_array(out / "scene"), sensor="landsat8", indices=["ndvi"])
        pipe = make_pipeline(
            LogT(), StandardScaler(), PCA(n_components=3), MiniBatchKMeans(n_init=1)
        )
        result = {}
        with LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster, Client(cluster) as client:
            ens = ge.fit_ensemble(
                pipe, feats, space={"minibatchkmeans__n_clusters": [3, 4, 5, 6]},
                size=2, generations=2, keep=3, sample=3000, client=client,
            )
            result["members"] = [type(m.pipeline[1]).__name__ for m in ens.members]
            result["main"] = [type(m.pipeline[0]) is LogT for m in ens.members]
            (maps,) = ge.predict_many(ens, [feats])
            written = {k: str(ge.write_map(v, out / f"{k}.tif")) for k, v in maps.items()}
            result["maps"] = written

            # polygons in WGS 84, the scene in UTM 13N
            crs = feats.attrs["crs_wkt"]
            x0, y0 = float(feats.x.min()), float(feats.y.min())
            x1, y1 = float(feats.x.max()), float(feats.y.max())
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            polys = gpd.GeoDataFrame(
                {"class_name": ["north", "south"]},
                geometry=[box(x0, my + 60, x1, y1), box(x0, y0, x1, my - 60)],
                crs=crs,
            ).to_crs("EPSG:4326")
            polys.to_file(out / "polygons.gpkg")
            y = ge.rasterize_labels(out / "polygons.gpkg", like=feats)
            result["labels"] = json.loads(y.attrs["class_names"])
            result["labelled"] = int(np.isfinite(y.values).sum())
            rf = ge.fit_ensemble(
                RandomForestClassifier(n_estimators=10), feats, y=y,
                space={"max_depth": [3, 5]}, size=2, keep=2, criterion="kappa", client=client,
            )
            (rmaps,) = ge.predict_many(rf, [feats])
            vote = rmaps["vote"].values
            result["rf_classes"] = sorted(int(v) for v in np.unique(vote) if v != 255)
        print(json.dumps(result))
    """
)


def test_a_notebook_fits_its_own_step_and_a_forest_on_polygons_with_the_api(
    tmp_path: Path,
) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(SCRIPT)
    proc = run(
        [sys.executable, str(script), str(tmp_path)], tmp_path, timeout=400, OMP_NUM_THREADS="1"
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["members"]) >= 3 and set(out["members"]) == {"StandardScaler"}
    assert all(out["main"])  # fitted members come back holding the notebook's own class
    assert "vote" in out["maps"]
    for path in out["maps"].values():
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32613 and src.width == 96 and src.height == 80
    assert out["labels"] == {"0": "north", "1": "south"}
    assert out["labelled"] > 96 * 20
    assert out["rf_classes"] and set(out["rf_classes"]) <= {0, 1}
