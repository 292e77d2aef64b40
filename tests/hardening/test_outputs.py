"""Outputs never lose data (issue 12, "Data loss"): a store output replaces only a finished
geoensemble store of its own kind, a replacement killed at any point leaves the old or the new
store at its name, every stage removes its own leftovers, a store with a lost chunk file fails
naming the layer, unsafe layer names are refused at ingest, and a full disk is one line.

Real project copies, real GeoTiffs, Zarr stores, processes, SIGKILL and a real (tmpfs) full
file system; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from geoensemble.app import stages
from geoensemble.app.cli import stage_main
from geoensemble.app.config import to_dict
from geoensemble.errors import OutputError
from geoensemble.io.atomic import OLD_MARK, TMP_MARK, remove_stale_partials
from geoensemble.io.owned import store_refusal
from geoensemble.io.stack import open_store, store_meta
from tests.conftest import TINY, run
from tests.hardening.conftest import stage_cfg
from tests.integration.conftest import compose_tiny, copy_project

# These runs stand for a user's own runs into the pipeline's default folders: the guard of the
# DVC outputs (tests/test_dvc_guard.py) is told to let them through, so the store checks speak.
BY_HAND = ["paths.dvc_outputs=allow"]


PY = sys.executable


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (Hydra's run logs aside) with the hash of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not p.is_symlink() and rel.parts[0] not in ("logs", "outputs"):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def error_line(err: str, stage: str) -> str:
    """The stage's one error line; fails on a traceback or on more than one line."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"geoensemble {stage}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"geoensemble {stage}: error: "), err
    return lines[0]


def run_stage(
    stage: str, cfg: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``stage_main(stage, ["--params", file])`` as ``dvc repro`` runs it: (exit code, err)."""
    params = tmp_path / f"params-{stage}.yaml"
    params.write_text(yaml.safe_dump(cfg if isinstance(cfg, dict) else to_dict(cfg)))
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        stage_main(stage, ["--params", str(params)])
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), capfd.readouterr().err


# --------------------------------------------------------------------------- reported cases
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project as a user has it: a git checkout with dvc.yaml, an MLflow store and the
    tiny scene in data/raw (the default paths)."""
    d = copy_project(tmp_path_factory.mktemp("outputs-project"))
    run(["git", "init", "-q"], d)
    run(["git", "add", "-A"], d)
    run(["git", "commit", "-qm", "project"], d)
    with sqlite3.connect(d / "mlflow.db") as db:  # stands for the user's runs: must survive
        db.execute("create table runs (id text)")
        db.execute("insert into runs values ('r1')")
    run([PY, "pipelines/scene.py", *TINY, *BY_HAND], d, timeout=300)
    assert (d / "data" / "raw" / "scene" / "B1.TIF").is_file()
    return d


@pytest.mark.parametrize(
    ("stage", "override", "message"),
    [
        (
            "ingest",
            "paths.stack=data",
            r"refusing to write paths\.stack=data: the stack store replaces that folder as a "
            r"whole, and it holds data\.path=data/raw/scene; set paths\.stack to a folder of "
            r"its own",
        ),
        (
            "featurize",
            "paths.features=data/raw",
            r"refusing to write paths\.features=data/raw: .* it holds data\.path=data/raw/scene;"
            r" set paths\.features to a folder of its own",
        ),
        (
            "ingest",
            "paths.stack={root}",
            r"refusing to write paths\.stack=.*: the stack store replaces that folder as a "
            r"whole, and it is the current folder; set paths\.stack to a folder of its own",
        ),
        (
            "featurize",
            "paths.features=.",
            r"refusing to write paths\.features=\.: .* it is the current folder",
        ),
        (
            "ingest",
            "paths.stack=conf",
            r"refusing to write paths\.stack=conf: .* it is not a store geoensemble wrote",
        ),
    ],
    ids=["stack=data", "features=data/raw", "stack=project-root", "features=cwd", "stack=conf"],
)
def test_a_store_output_never_replaces_a_folder_that_is_not_its_own(
    project: Path, stage: str, override: str, message: str
) -> None:
    before = snapshot(project)
    proc = run(
        [PY, f"pipelines/{stage}.py", *TINY, *BY_HAND, override.format(root=project)],
        project,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, error_line(proc.stderr, stage)), proc.stderr
    assert snapshot(project) == before  # .git, mlflow.db, data/raw: all intact
    assert not [p for p in project.rglob(f"*{TMP_MARK}*")]
    assert sqlite3.connect(project / "mlflow.db").execute("select id from runs").fetchall() == [
        ("r1",)
    ]


def _store(path: Path, value: float, kind: str = "features") -> Path:
    """A small finished store of ``kind`` whose one layer ``a`` holds ``value``."""
    import xarray as xr

    from geoensemble.io.stack import set_grid, write_store

    ds = xr.Dataset({"a": (("y", "x"), np.full((20, 20), value, "float32"))})
    ds = ds.assign_coords(y=np.arange(20.0), x=np.arange(20.0)).chunk(8)
    write_store(set_grid(ds, None, Affine.identity()), path, kind=kind, meta={"v": value})
    return path


def test_what_a_store_may_replace(tmp_path: Path) -> None:
    ours = _store(tmp_path / "features", 1.0)
    assert store_refusal(ours, "features") is None
    assert store_refusal(ours, "stack") == "it is a geoensemble features store, not a stack store"
    # chunk files linked into a cache, as DVC's symlink cache type checks them out
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in sorted((ours / "a").glob("[0-9]*")):
        shutil.move(f, cache / f.name)
        f.symlink_to(cache / f.name)
    assert store_refusal(ours, "features") is None
    assert "chunks" in store_meta(ours)
    assert float(open_store(ours)["a"].mean()) == 1.0
    (tmp_path / "empty").mkdir()
    assert store_refusal(tmp_path / "empty", "stack") is None  # nothing to lose
    # a store the user put a file into is not only ours any more
    (ours / "notes.txt").write_text("mine")
    assert store_refusal(ours, "features") == "it holds notes.txt, which is not part of a store"
    (ours / "notes.txt").unlink()
    (ours / "a" / "sub").mkdir()
    assert "it holds a/sub" in str(store_refusal(ours, "features"))
    (ours / "a" / "sub").rmdir()
    # a project folder, even one that also looks like a store
    (ours / "dvc.yaml").write_text("stages: {}\n")
    assert "project folder (it holds dvc.yaml)" in str(store_refusal(ours, "features"))
    (ours / "dvc.yaml").unlink()
    # a store of the previous version: geoensemble.json without "kind", and .zmetadata
    side = json.loads((ours / "geoensemble.json").read_text())
    old = {k: v for k, v in side.items() if k not in ("kind", "chunks")}
    (ours / "geoensemble.json").write_text(json.dumps({**old, "feature_names": ["a"]}))
    assert store_refusal(ours, "features") is None
    (tmp_path / "link").symlink_to(ours)
    assert store_refusal(tmp_path / "link", "features") == (
        "it is a symbolic link, not a store folder"
    )
    # and write_store itself refuses (the last guard, for callers that skip the stage check)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(OutputError, match=r"refusing to replace .*mine: it is not a store"):
        _store(tmp_path / "mine", 2.0)
    assert (tmp_path / "mine" / "photo.jpg").read_bytes() == b"\xff\xd8"


def test_a_stage_replaces_its_own_store_and_an_older_versions_store(tmp_path: Path) -> None:
    cfg = compose_tiny(tmp_path)
    for stage in ("scene", "ingest", "featurize"):
        stages.STAGES[stage](cfg)
    feats = Path(cfg.paths.features)
    side = json.loads((feats / "geoensemble.json").read_text())
    assert side["kind"] == "features" and side["chunks"]["ndvi"][0] > 0
    # as the previous version left it: no kind, no manifest
    legacy = {k: v for k, v in side.items() if k not in ("kind", "chunks")}
    (feats / "geoensemble.json").write_text(json.dumps(legacy))
    open_store(feats)  # still readable (not checked: it has no manifest)
    stages.featurize(cfg)
    assert store_meta(feats)["kind"] == "features"
    stages.ingest(cfg)
    assert store_meta(cfg.paths.stack)["kind"] == "stack"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features", "raw", "reports", "stack"]


# --------------------------------------------------------------------------- killed swaps
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, xarray as xr
    from affine import Affine
    from geoensemble.io import atomic
    from geoensemble.io.stack import set_grid, write_store

    target, when = sys.argv[1], sys.argv[2]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if when == "before-swap":
        atomic._swap_in = lambda tmp, t: die()
    elif when == "mid-delete":
        # the old store is being deleted after the swap: half of its files go, then the kill
        def half(p):
            files = sorted(f for f in p.rglob("*") if f.is_file())
            for f in files[: len(files) // 2]:
                f.unlink()
            die()
        atomic._remove = half
    elif when == "between-renames":
        # a file system without an atomic exchange: killed after the old store was renamed
        # aside, before the new one moved in
        atomic._exchange = lambda a, b: False
        real = os.replace
        def replace(src, dst):
            if str(dst) == target:
                die()
            real(src, dst)
        atomic.os.replace = replace
    ds = xr.Dataset({"a": (("y", "x"), np.full((20, 20), 2.0, "float32"))})
    ds = ds.assign_coords(y=np.arange(20.0), x=np.arange(20.0)).chunk(8)
    write_store(set_grid(ds, None, Affine.identity()), target, kind="features", meta={"v": 2})
    """
)


@pytest.mark.parametrize(
    ("when", "expect", "leftovers"),
    [
        ("before-swap", 1.0, [TMP_MARK]),
        ("mid-delete", 2.0, [TMP_MARK]),
        ("between-renames", None, [TMP_MARK, OLD_MARK]),
    ],
)
def test_a_store_replacement_killed_at_any_point_leaves_a_whole_store(
    tmp_path: Path, when: str, expect: float | None, leftovers: list[str]
) -> None:
    target = _store(tmp_path / "features", 1.0)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run(
        [PY, str(script), str(target), when], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".features"))
    assert [m for m in leftovers if any(m in h for h in hidden)] == leftovers, hidden
    if expect is not None:  # the target name holds a complete store, never a half-deleted one
        assert float(open_store(target)["a"].mean()) == expect
        assert store_meta(target)["v"] == expect
    else:  # the only gap: the old store is whole under its hidden name, the new beside it
        assert not target.exists()
    # the next run of the stage clears its own leftovers (and puts back an old store that
    # was renamed aside, when nothing took its name); another writer's file stays
    foreign = tmp_path / f".other{TMP_MARK}0000beef"
    foreign.write_text("x")
    remove_stale_partials(tmp_path, ["features"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [foreign.name]
    assert float(open_store(target)["a"].mean()) == (expect or 1.0)


# --------------------------------------------------------------------------- leftovers
LEFTOVERS = {
    "scene": lambda d: [d / "raw" / "scene" / "B3.TIF", d / "raw" / "labels" / "truth.tif"],
    "ingest": lambda d: [d / "stack", d / "reports" / "ingest.json"],
    "featurize": lambda d: [d / "features", d / "reports" / "figures" / "features" / "x.png"],
    "labels": lambda d: [d / "labels" / "labels.tif", d / "labels" / "classes.json"],
}


@pytest.mark.parametrize("stage", list(LEFTOVERS))
def test_every_stage_removes_its_own_leftovers_and_nothing_else(tmp_path: Path, stage: str) -> None:
    cfg = compose_tiny(tmp_path)
    order = list(LEFTOVERS)
    for s in order[: order.index(stage)]:
        stages.STAGES[s](cfg)
    stale, foreign = [], []
    for out in LEFTOVERS[stage](tmp_path):
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix:  # a file: a killed write leaves its hidden temporary file
            p = out.with_name(f".{out.name}{TMP_MARK}dead0001")
            p.write_bytes(b"half")
            stale.append(p)
        else:  # a store: a half-written new one, and an old one being deleted
            out.mkdir(exist_ok=True)
            for mark in (TMP_MARK, OLD_MARK):
                p = out.with_name(f".{out.name}{mark}dead0001")
                p.mkdir()
                (p / "0.0").write_bytes(b"half")
                stale.append(p)
        f = out.with_name(f".{out.name}-notes.partial")  # the user's: not our pattern
        f.write_text("keep")
        foreign.append(f)
    stages.STAGES[stage](cfg)
    assert [p for p in stale if p.exists()] == []
    assert all(f.read_text() == "keep" for f in foreign)


# --------------------------------------------------------------------------- lost chunks
@pytest.fixture
def holed(featurized: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny features store with one chunk file of ``ndvi`` deleted, and the
    pickled model fitted on the features (predict's external model)."""
    from sklearn.cluster import KMeans

    feats = tmp_path / "features"
    shutil.copytree(featurized / "features", feats)
    names = list(store_meta(feats)["feature_names"])
    ds = open_store(feats)
    X = np.stack([ds[n].to_numpy().ravel() for n in names], axis=1)
    km = KMeans(n_clusters=3, n_init=1, random_state=0).fit(X[~np.isnan(X).any(axis=1)])
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(km))
    (feats / "ndvi" / "0.1").unlink()
    return feats, tmp_path / "model.pkl"


def test_predict_on_a_store_with_a_lost_chunk_fails_naming_the_layer_and_writes_no_map(
    holed: tuple[Path, Path], featurized: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    feats, model = holed
    names = store_meta(feats)["feature_names"]
    cfg = stage_cfg(
        featurized,
        tmp_path,
        f"paths.features={feats}",
        f"predict.external.path={model}",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(names)}]",
        "predict.progress=false",
    )
    code, err = run_stage("predict", cfg, tmp_path, capfd)
    assert code == 2, err
    line = error_line(err, "predict")
    assert re.search(
        rf"{re.escape(str(feats))} is a damaged store: layer 'ndvi' does not match what was "
        r"written \(1 of its \d+ chunk files are missing\); rebuild it: dvc repro --force "
        r"featurize",
        line,
    ), line
    maps = tmp_path / "maps"
    assert not maps.exists() or not [p for p in maps.rglob("*") if p.is_file()]


def test_train_on_a_store_with_a_lost_chunk_fails_before_any_run(
    holed: tuple[Path, Path], featurized: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    feats, _ = holed
    cfg = stage_cfg(featurized, tmp_path, f"paths.features={feats}")
    code, err = run_stage("train", cfg, tmp_path, capfd)
    assert code == 2, err
    assert "damaged store: layer 'ndvi'" in error_line(err, "train")
    assert not (tmp_path / "reports" / "train.json").exists()
    if (tmp_path / "mlflow.db").exists():
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert all(r.info.status != "RUNNING" for r in runs)


def test_a_truncated_chunk_is_caught_too(holed: tuple[Path, Path]) -> None:
    from geoensemble.errors import InputFileError

    feats, _ = holed
    shutil.copy2(feats / "ndwi" / "0.0", feats / "ndvi" / "0.1")  # a file, wrong bytes
    with pytest.raises(InputFileError, match=r"layer 'ndvi' .*hold \d+ bytes instead of"):
        open_store(feats)


# --------------------------------------------------------------------------- layer names
@pytest.mark.parametrize("bad", ["a/b", "..", "c\\d", ""])
def test_an_unsafe_band_description_is_refused_at_ingest(
    bad: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tif = tmp_path / "two.tif"
    prof = dict(driver="GTiff", width=16, height=16, count=2, dtype="float32", crs="EPSG:32613")
    with rasterio.open(tif, "w", transform=Affine(30, 0, 0, 0, -30, 480), **prof) as dst:
        dst.write(np.ones((2, 16, 16), "float32"))
        dst.set_band_description(1, "red")
        dst.set_band_description(2, bad)
    one_file = [f"data.path={tif}", "data.format=auto", "data.layers=[]"]
    if bad == "":
        # an empty description falls back to band_2: a safe name, and the layer is kept
        cfg = compose_tiny(tmp_path, *one_file)
        stages.ingest(cfg)
        assert sorted(open_store(cfg.paths.stack).data_vars) == ["band_2", "red"]
        return
    cfg = compose_tiny(tmp_path, *one_file)
    code, err = run_stage("ingest", cfg, tmp_path, capfd)
    assert code == 2, err
    line = error_line(err, "ingest")
    assert re.search(
        rf"the layer name {re.escape(repr(bad))} taken from {re.escape(str(tif))} .*: give each "
        r"layer a name of your own with data\.layers, e\.g\. data\.layers=\[",
        line,
    ), line
    assert not (tmp_path / "stack").exists()
    # named in data.layers, the same band ingests
    cfg = compose_tiny(
        tmp_path, *one_file, "data.layers=[{name: red, band: 1}, {name: nir, band: 2}]"
    )
    stages.ingest(cfg)
    assert sorted(open_store(cfg.paths.stack).data_vars) == ["nir", "red"]


@pytest.mark.parametrize("bad", ["a/b", "..", ".zattrs", "x"])
def test_an_unsafe_layer_name_in_the_config_is_refused(
    bad: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = to_dict(compose_tiny(tmp_path))
    cfg["data"]["layers"] = [{"name": bad, "file": "B1"}]
    code, err = run_stage("ingest", cfg, tmp_path, capfd)
    assert code == 2, err
    assert re.search(
        rf"config key data\.layers\[0\]\.name={re.escape(repr(bad))} is invalid: use a name "
        r"of letters, digits, '_', '-' and '\.' \(it ",
        error_line(err, "ingest"),
    )
    assert not (tmp_path / "stack").exists()


# --------------------------------------------------------------------------- file outputs
def _foreign_tif(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = dict(driver="GTiff", width=4, height=4, count=1, dtype="uint8")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.full((1, 4, 4), 7, "uint8"))
    return path.read_bytes()


def test_scene_and_labels_replace_only_their_own_geotiffs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_tiny(tmp_path)
    mine = _foreign_tif(tmp_path / "raw" / "scene" / "B3.TIF")
    code, err = run_stage("scene", cfg, tmp_path, capfd)
    assert code == 2, err
    assert re.search(
        r"refusing to replace .*B3\.TIF \(paths\.raw=.*\): it is not a GeoTiff geoensemble "
        r"wrote \(it has no geoensemble_output tag\); set paths\.raw to a folder of its own",
        error_line(err, "scene"),
    )
    assert (tmp_path / "raw" / "scene" / "B3.TIF").read_bytes() == mine
    assert sorted(p.name for p in (tmp_path / "raw" / "scene").iterdir()) == ["B3.TIF"]
    (tmp_path / "raw" / "scene" / "B3.TIF").unlink()
    for stage in ("scene", "ingest", "featurize", "labels"):
        stages.STAGES[stage](cfg)
    stages.scene(cfg)  # its own files: replaced
    stages.labels(cfg)
    labels_tif = tmp_path / "labels" / "labels.tif"
    labels_tif.unlink()
    mine = _foreign_tif(labels_tif)
    code, err = run_stage("labels", cfg, tmp_path, capfd)
    assert code == 2, err
    assert "refusing to replace" in error_line(err, "labels")
    assert labels_tif.read_bytes() == mine
    # without labels, the stage drops an earlier run's labels.tif, never the user's
    code, err = run_stage(
        "labels", compose_tiny(tmp_path, "data.labels.path=null"), tmp_path, capfd
    )
    assert code == 2 and labels_tif.read_bytes() == mine, err


def test_predict_never_replaces_a_map_it_did_not_write_even_with_overwrite(
    holed: tuple[Path, Path], featurized: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _, model = holed
    names = store_meta(featurized / "features")["feature_names"]
    cfg = stage_cfg(
        featurized,
        tmp_path,
        f"predict.external.path={model}",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(names)}]",
        "predict.external.label=km",
        "predict.progress=false",
        "predict.overwrite=true",
    )
    out = stages.predict(cfg)
    ours = Path(out["path"])
    stages.predict(cfg)  # its own map: replaced (predict.overwrite=true)
    ours.unlink()
    mine = _foreign_tif(ours)
    code, err = run_stage("predict", cfg, tmp_path, capfd)
    assert code == 2, err
    assert re.search(
        rf"refusing to replace {re.escape(str(ours))}: it is not a GeoTiff geoensemble wrote"
        r".*choose another predict\.output_dir",
        error_line(err, "predict"),
    )
    assert ours.read_bytes() == mine


# --------------------------------------------------------------------------- disk full
@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs filled up to its last few KiB (skipped where mount is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or 'not root'}")
    try:
        st = os.statvfs(mnt)
        (mnt / ".filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 12 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def visible(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != ".filler") if d.exists() else []


@pytest.mark.parametrize(
    ("stage", "key"), [("ingest", "paths.stack"), ("featurize", "paths.features")]
)
def test_a_full_disk_while_writing_a_store_is_one_line_and_leaves_nothing(
    stage: str,
    key: str,
    featurized: Path,
    full_disk: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    target = full_disk / "store"
    cfg = stage_cfg(featurized, tmp_path, f"{key}={target}")
    code, err = run_stage(stage, cfg, tmp_path, capfd)
    assert code == 2, err
    assert re.search(
        rf"cannot write {re.escape(key)}={re.escape(str(target))}: no space left on the "
        rf"device .*; free space there or set {re.escape(key)} to another location",
        error_line(err, stage),
    )
    assert visible(full_disk) == []  # no store, no partial


def test_a_full_disk_while_writing_maps_is_one_line_and_leaves_nothing(
    holed: tuple[Path, Path],
    featurized: Path,
    full_disk: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _, model = holed
    names = store_meta(featurized / "features")["feature_names"]
    cfg = stage_cfg(
        featurized,
        tmp_path,
        f"predict.output_dir={full_disk}",
        f"predict.external.path={model}",
        "predict.external.allow_pickle=true",
        f"predict.external.feature_names=[{','.join(names)}]",
        "predict.progress=false",
    )
    code, err = run_stage("predict", cfg, tmp_path, capfd)
    assert code == 2, err
    assert re.search(
        r"cannot write .*: no space left on the device .*; free space there or set "
        r"predict\.output_dir to another location",
        error_line(err, "predict"),
    )
    assert visible(full_disk) == []


def test_a_full_artifact_disk_names_the_artifact_store_not_the_database(
    featurized: Path, full_disk: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The SQLite store has room, the artifact folder's disk is full: the line names the
    artifact store and tracking.artifact_root (not the disk of mlflow.db)."""
    art = full_disk / "artifacts"
    cfg = stage_cfg(featurized, tmp_path, f"tracking.artifact_root={art}", "ensemble.size=2")
    code, err = run_stage("train", cfg, tmp_path, capfd)
    assert code == 2, err
    line = error_line(err, "train")
    assert re.search(
        rf"no space left on the disk of the MLflow artifact store {re.escape(str(art))} while "
        r"MLflow wrote a model there: free space there, or point tracking\.artifact_root at "
        r"another disk",
        line,
    ), line
    assert "mlflow.db" not in line
    assert not (tmp_path / "reports" / "train.json").exists()
