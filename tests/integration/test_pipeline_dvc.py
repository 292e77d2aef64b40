"""The whole pipeline with real DVC in a temporary git repo and a real SQLite MLflow store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio
import yaml

from geoensemble import plots
from geoensemble.classes import SCENE_CLASSES, class_colour, shade
from tests.conftest import TINY, run, tool
from tests.integration.conftest import copy_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo holding the project, with a tiny scene in params.yaml, after dvc repro."""
    d = copy_project(tmp_path_factory.mktemp("project"))
    run(["git", "init", "-q", "-b", "main"], d)
    py = str(Path(tool("python")))
    # A tiny scene: same conf/, composed with overrides, exactly as DVC composes it.
    run([py, "-m", "geoensemble.app.params", *TINY], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "project"], d)
    out = run([tool("dvc"), "repro"], d, timeout=900)
    (d.parent / "repro.log").write_text(out.stdout + out.stderr)  # beside the repo, not in it
    return d


def test_repro_prints_no_download_progress_bars(repo: Path) -> None:
    """MLflow's "Downloading artifacts" bars (five lines a model) are off in the stages'
    own processes; the stage's log lines stay."""
    log = (repo.parent / "repro.log").read_text()
    assert "predict: " in log and "Downloading artifacts" not in log


def test_repro_writes_a_map_on_the_input_grid(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    train = json.loads((repo / "reports/train.json").read_text())
    maps = sorted((repo / "outputs/maps").glob("*.tif"))
    assert [m.name for m in maps] == [
        "synthetic_geoensemble_champion.tif",
        "synthetic_geoensemble_champion_classes.tif",
        "synthetic_geoensemble_champion_regularised.tif",
    ]
    assert (repo / "outputs/maps/synthetic_geoensemble_champion.png").stat().st_size > 1000
    with rasterio.open(repo / "data/raw/scene/B1.TIF") as src:
        band, grid = src.read(1), (src.crs, src.transform, src.shape)
    with rasterio.open(maps[0]) as m:
        classes = m.read(1)
        assert (m.crs, m.transform, m.shape) == grid
        assert m.dtypes[0] == "uint8" and m.nodata == 255
        assert m.profile["compress"].lower() == "lzw"
        assert m.tags()["model_version"] == train["champion"]["version"]
        lock = yaml.safe_load((repo / "dvc.lock").read_text())
        features_md5 = next(
            o["md5"] for o in lock["stages"]["featurize"]["outs"] if o["path"] == "data/features"
        )
        assert json.loads(m.tags()["dvc_inputs"]) == {"data/features": features_md5}
        names = json.loads(m.tags()["class_names"])
        colours = m.colormap(1)
    # The default champion map names the scene's real classes (from truth.tif), in their
    # colours; clusters without a majority class keep a neutral name.
    real = {n for n, _ in SCENE_CLASSES.values()}
    assert all(re.fullmatch(r"\w+ \(\d+ %\)|cluster \d+", v) for v in names.values()), names
    named = {int(c): v.split(" (")[0] for c, v in names.items() if " (" in v}
    assert set(named.values()) <= real and len(set(named.values())) >= 3, names
    shades = {n: {shade(class_colour(n), i) for i in range(4)} for n in real}
    assert all(colours[c][:3] in shades[n] for c, n in named.items())
    legend = plots.legend_of(repo / "outputs/maps/synthetic_geoensemble_champion.png")
    assert [e["name"] for e in legend] == list(names.values())
    # evaluate's truth-by-cluster table names the champion's clusters as the map does.
    metrics = json.loads((repo / "reports/evaluation.json").read_text())
    assert metrics["cluster_names"] and metrics["cluster_names"].items() <= names.items()
    border = band == 0
    assert border.any() and (classes[border] == 255).all()
    k = train["members"][
        [m["member"] for m in train["members"]].index(train["champion"]["member"])
    ]["params"]["n_clusters"]
    assert (classes[~border] < k).all()
    assert len(np.unique(classes[~border])) == k
    assert params["ensemble"]["size"] == 3


def test_the_class_map_names_every_class_the_clusters_hold_a_majority_of(repo: Path) -> None:
    """Counted by hand over the whole map: every truth class that at least one champion
    cluster holds a clear majority of (> 55 %, beyond the naming sample's error) is a class
    of the class map; the default run's speckle is in its MLflow run, before and after."""
    maps = repo / "outputs/maps"
    with rasterio.open(repo / "data/raw/labels/truth.tif") as src:
        truth, nodata = src.read(1), src.nodata
        tnames = {int(k[6:]): v for k, v in src.tags().items() if k.startswith("CLASS_")}
    with rasterio.open(maps / "synthetic_geoensemble_champion.tif") as src:
        clusters = src.read(1)
    with rasterio.open(maps / "synthetic_geoensemble_champion_classes.tif") as src:
        names = json.loads(src.tags()["class_names"])
    valid = (truth != nodata) & (clusters != 255)
    held = set()
    for k in np.unique(clusters[valid]):
        counts = np.bincount(truth[valid & (clusters == k)])
        if counts.max() > 0.55 * counts.sum():
            held.add(tnames[int(counts.argmax())])
    assert held and held <= {v.split(" (")[0] for v in names.values()}, (held, names)
    with rasterio.open(maps / "synthetic_geoensemble_champion_regularised.tif") as src:
        assert src.tags()["geoensemble_regularisation"].startswith("majority(radius=1)")
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    (run_,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "attributes.run_name LIKE 'predict-%'",
    )
    m = run_.data.metrics
    assert 0 <= m["speckle_share_after"] < m["speckle_share_before"], m
    assert m["small_patches_after"] < m["small_patches_before"], m


def test_mlflow_holds_parent_children_and_champion(repo: Path) -> None:
    train = json.loads((repo / "reports/train.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{repo / 'mlflow.db'}")  # not one an earlier test set
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("geoensemble")
    parent = client.get_run(train["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["ensemble.size"] == "3"
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 3
    aics = {c.info.run_name: c.data.metrics["aic"] for c in children}
    assert len(set(aics.values())) == 3
    best = min(aics, key=aics.get)
    assert train["champion"]["member"] == best
    mv = client.get_model_version_by_alias("geoensemble", "champion")
    assert mv.run_id == train["champion"]["run_id"]
    assert client.get_run(mv.run_id).data.metrics["aic"] == pytest.approx(min(aics.values()))
    model = mlflow.sklearn.load_model("models:/geoensemble@champion")
    assert model.predict(np.zeros((2, len(train["feature_names"])), np.float32)).shape == (2,)
    metrics = json.loads((repo / "reports/evaluation.json").read_text())
    assert metrics["n_members"] == 3 and metrics["champion"] == best
    assert metrics["champion_adjusted_rand"] > 0.3


def test_dvc_metrics_show_the_few_numbers_that_matter(repo: Path) -> None:
    shown = json.loads(run([tool("dvc"), "metrics", "show", "--json"], repo).stdout)
    files = shown[""]["data"] if "" in shown else shown["workspace"]["data"]
    # the ingest statistics are a report, not metrics; the rest is in evaluation.json
    assert set(files) == {"reports/metrics.json"}
    metrics = files["reports/metrics.json"]["data"]
    assert list(metrics) == ["champion_aic", "clusters", "champion_adjusted_rand", "champion_nmi"]
    evaluation = json.loads((repo / "reports/evaluation.json").read_text())
    assert metrics == {k: evaluation[k] for k in metrics}
    train = json.loads((repo / "reports/train.json").read_text())
    assert metrics["champion_aic"] == pytest.approx(train["champion"]["aic"])
    assert metrics["clusters"] == train["champion"]["n_clusters"]


def test_dvc_plots_render_offline(repo: Path, tmp_path: Path) -> None:
    """`dvc plots show` uses the project's template (.dvc/config): no script from a CDN."""
    out = tmp_path / "plots"
    run([tool("dvc"), "plots", "show", "-o", str(out)], repo)
    html = (out / "index.html").read_text()
    assert not re.search(r"<script[^>]+src=", html), "a script is loaded from elsewhere"
    assert not re.search(r"(?:src|href)=[\"']?https?://", html)  # ($schema URLs are data)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert any(i.endswith("members.png") for i in images), images
    for src in images:  # copied beside the page, shown offline
        assert (out / src).is_file() and (out / src).stat().st_size > 1000, src
    # every vega plot's data is written as a table by the template's stand-in for vega-embed
    assert "function vegaEmbed" in html and html.count("vegaEmbed('#") >= 2


def test_gdal_statistics_on_a_map_leave_dvc_clean(repo: Path) -> None:
    """The map's .aux.xml (tracked by DVC) holds its class names and exact statistics:
    reading the statistics, as gdalinfo -stats and QGIS do, writes nothing."""
    tif = repo / "outputs/maps/synthetic_geoensemble_champion.tif"
    aux = tif.with_name(tif.name + ".aux.xml")
    before = aux.read_bytes()
    assert b"<CategoryNames>" in before and b"STATISTICS_MEAN" in before
    with rasterio.open(tif) as m:
        band = m.read(1)
        (st,) = m.stats(approx=False)
        m.statistics(1, approx=True)
    valid = band[band != 255].astype(float)
    assert (st.min, st.max) == (valid.min(), valid.max())
    assert st.mean == pytest.approx(valid.mean()) and st.std == pytest.approx(valid.std())
    assert aux.read_bytes() == before
    out = run([tool("dvc"), "status"], repo).stdout
    assert "up to date" in out.lower(), out


def test_editing_imported_code_makes_its_stages_stale(repo: Path) -> None:
    f = repo / "src/geoensemble/io/profiles.py"  # imported by scene, ingest (via io) ...
    original = f.read_text()
    try:
        f.write_text(original + "\n# edited\n")
        out = run([tool("dvc"), "status", "--json"], repo).stdout
        stale = set(json.loads(out))
        assert {"dvc.yaml:scene", "dvc.yaml:predict"} <= {f"dvc.yaml:{s}" for s in stale} | stale
    finally:
        f.write_text(original)
    assert "up to date" in run([tool("dvc"), "status"], repo).stdout.lower()


def test_repro_again_is_up_to_date_and_exp_run_recomposes(repo: Path) -> None:
    out = run([tool("dvc"), "status"], repo).stdout
    assert "up to date" in out.lower() or "changed" not in out.lower()
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    run(
        [
            tool("dvc"),
            "exp",
            "run",
            "-S",
            "model.n_clusters=5",
            "-S",
            "~model.space",
            "-S",
            "ensemble.size=2",
            "-S",
            "ensemble.generations=1",
            "-S",
            "ensemble.keep=1",
            "-S",
            "data.scene.width=128",
            "-S",
            "data.scene.height=112",
            "-S",
            "features.sample.size=6000",
            "-S",
            "compute.n_workers=1",
            "-S",
            "compute.processes=false",
            "-S",
            "data.scene.n_points=120",
            "-S",
            "data.chunk_size=64",
            "-S",
            "predict.block_size=64",
        ],
        repo,
        timeout=900,
    )
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["n_clusters"] == 5
    assert params["model"]["estimator"]["n_clusters"] == 5  # interpolation resolved by DVC
    train = json.loads((repo / "reports/train.json").read_text())
    assert len(train["members"]) == 2
    assert all(m["params"] == {} for m in train["members"])  # nothing searched: k=5 for all
    assert params["model"].get("space", {}) == {}
    shown = run([tool("dvc"), "exp", "show", "--json"], repo).stdout
    assert "champion_aic" in shown
