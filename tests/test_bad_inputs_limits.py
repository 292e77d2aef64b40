"""Issue 12: bounds and one-line errors for conditions the user can fix, as a user meets them.

The same contract as ``test_bad_inputs.py`` (whose harness this reuses, in-process through
``stage_main(stage, ["--params", file])``): exit code 2, one line naming the culprit and the
fix, no traceback, nothing left behind, every MLflow run closed. Cases marked ``before_run``
must fail before the stage opens any MLflow run; the others must close theirs as FAILED.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from tests.test_bad_inputs import (  # noqa: F401  (project and base are fixtures)
    Case,
    _overrides,
    base,
    check_case,
    edits,
    project,
    scene_copy,
)

CASES: list[Case] = []
BEFORE_RUN: set[str] = set()  # ids of cases that must fail before any MLflow run starts


def case(stage: str, match: str, *, before_run: bool = False, **kw: Any) -> Any:
    def register(fn: Any) -> Any:
        CASES.append(Case(fn.__name__, stage, match, fn, **kw))
        if before_run:
            BEFORE_RUN.add(fn.__name__)
        return fn

    return register


# --------------------------------------------------------------------------- params files
def _laughs() -> str:
    """A 'billion laughs' params file: 9 levels of 9 aliases, 9**9 values once expanded."""
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\nseed: 1\n"


@case("train", r"config file .*params\.yaml expands to over 100000 values through YAML anchors")
def params_yaml_alias_bomb(proj: Path, tmp: Path) -> str:
    return _laughs()


@case("train", r"config file .*params\.yaml is 100\.0 MB, over the 1 MB a params file may hold")
def params_with_a_100_mb_value(proj: Path, tmp: Path) -> str:
    return "seed: 1\ndata:\n  name: '" + "x" * 100_000_000 + "'\n"


@case("train", r"config file .*params\.yaml grows to over 1 MB once its \$\{\.\.\.\} interpol")
def params_interpolation_bomb(proj: Path, tmp: Path) -> str:
    keys = "abcdefghi"
    parts = ['a: "lollollollol"']
    parts += [f'{k}: "{"".join(["${x." + p + "}"] * 9)}"' for p, k in itertools.pairwise(keys)]
    return "x: {" + ", ".join(parts) + "}\nseed: 1\n"


# --------------------------------------------------------------------------- the search
case(
    "train",
    r"ensemble\.size=200 members per generation, but model\.space allows only 8 distinct "
    r"member\(s\) \(model\.space\.n_clusters\): lower ensemble\.size to at most 8",
    before_run=True,
)(edits(ensemble__size=200))
case(
    "train",
    r"model\.space\.n_clusters=7000 needs at least 7000 pixels to fit, but a member fits on "
    r"6000 .*: lower model\.space\.n_clusters",
    before_run=True,
)(edits(model__space={"n_clusters": [4, 5, 6, 7000]}, limits__max_clusters=10000))
case(
    "train",
    r"model\.estimator\.n_init: The 'n_init' parameter of MiniBatchKMeans must be .* Got 0 "
    r"instead: fix model\.estimator\.n_init",
    before_run=True,
)(edits(model__estimator__n_init=0))
case(
    "train",
    r"model\.space\.n_clusters: The 'n_clusters' parameter .* Got -3 instead: fix model\.space",
    before_run=True,
)(edits(model__space={"n_clusters": [2, 3, 4, -3]}))


def _one_pixel_scene(proj: Path, tmp: Path) -> Path:
    """The tiny scene cut to its pixel (40, 40): seven 1x1 GeoTiffs."""
    out = tmp / "in" / "one"
    out.mkdir(parents=True)
    win = Window(40, 40, 1, 1)
    for f in sorted((proj / "raw" / "scene").glob("*.TIF")):
        with rasterio.open(f) as src:
            prof = {**src.profile, "width": 1, "height": 1, "tiled": False}
            prof["transform"] = src.window_transform(win)
            for k in ("blockxsize", "blockysize"):
                prof.pop(k, None)
            data = src.read(window=win)
        with rasterio.open(out / f.name, "w", **prof) as dst:
            dst.write(data)
    return out


@case(
    "train",
    r"features\.steps\.pca\.n_components=6 needs at least 6 pixels to fit, but a member fits "
    r"on 1 \(the valid pixels sampled from paths\.features=\S*/one-features\): lower",
    before_run=True,
)
def one_by_one_raster(proj: Path, tmp: Path) -> dict[str, Any]:
    from geoensemble.app import stages
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate
    from tests.conftest import ROOT

    scene = _one_pixel_scene(proj, tmp)
    cfg = validate(
        compose(
            [
                *_overrides(proj),
                f"data.path={scene}",
                f"paths.stack={tmp}/in/one-stack",
                f"paths.features={tmp}/in/one-features",
                f"paths.reports={tmp}/in/reports",
            ],
            config_dir=ROOT / "conf",
        )
    )
    stages.ingest(cfg)
    stages.featurize(cfg)
    return {"paths.features": str(tmp / "in" / "one-features")}


case(
    "train",
    r"dask workers were stopped \d+ time\(s\) for going over their memory limit "
    r"compute\.memory_limit=100MB .*: raise compute\.memory_limit",
)(
    edits(
        compute__processes=True,
        compute__memory_limit="100MB",
        compute__timeout=20,
        compute__retries=0,
        ensemble__size=1,
    )
)


# --------------------------------------------------------------------------- files
@case(
    "ingest",
    r"\S*/B3\.TIF is not a GeoTiff: its name ends in \.TIF, but GDAL reads it as PNG\. "
    r"Replace it with the GeoTiff",
)
def png_renamed_tif(proj: Path, tmp: Path) -> dict[str, Any]:
    d = scene_copy(proj, tmp)
    with rasterio.open(d / "B3.TIF") as src:
        band = src.read(1)
    png = tmp / "B3.png"
    with rasterio.open(
        png, "w", driver="PNG", width=band.shape[1], height=band.shape[0], count=1, dtype="uint16"
    ) as dst:
        dst.write(band.astype("uint16"), 1)
    shutil.move(png, d / "B3.TIF")
    for extra in tmp.glob("B3.png*"):  # GDAL's .aux.xml sidecar
        extra.unlink()
    return {"data.path": str(d)}


@case(
    "evaluate",
    r"data\.truth=\S*/huge\.tif \(200000 x 200000 pixels\) needs ~[\d.]+ GB of memory, but "
    r"[\d.]+ GB are free: crop or resample it to the features' grid, or set data\.truth=null",
)
def truth_raster_too_large_for_memory(proj: Path, tmp: Path) -> dict[str, Any]:
    (tmp / "reports").mkdir()
    shutil.copy(proj / "reports" / "train.json", tmp / "reports" / "train.json")
    with rasterio.open(proj / "raw" / "scene" / "B1.TIF") as src:
        crs = src.crs
    # Sparse: no tile is written, the 40-gigapixel file holds ~1 MB of tile index.
    with rasterio.open(
        tmp / "huge.tif",
        "w",
        driver="GTiff",
        width=200_000,
        height=200_000,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=from_origin(0, 0, 30, 30),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=255,
        SPARSE_OK=True,
    ):
        pass
    return {"data.truth": str(tmp / "huge.tif")}


@case(
    "predict",
    r"predict\.scenes\[0\] \(scene 'other', \S*/nob4\): feature needs layer 'B4' but the stack "
    r"has \['B1', 'B2', 'B3', 'B5', 'B6', 'B7'\]\. Give this scene the layers the model was "
    r"trained on",
)  # the first scene is opened before the predict run starts: no run to mark FAILED
def predict_scene_missing_a_band(proj: Path, tmp: Path) -> dict[str, Any]:
    d = tmp / "in" / "nob4"
    shutil.copytree(proj / "raw" / "scene", d)
    (d / "B4.TIF").unlink()
    scene = {"name": "other", "format": "geotiff_dir", "path": str(d), "pattern": "B*.TIF"}
    return {"predict.scenes": [scene]}


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_limit_or_user_error_fails_in_one_line(
    c: Case,
    project: Path,  # noqa: F811
    base: dict[str, Any],  # noqa: F811
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    started = check_case(c, project, base, tmp_path, capfd)
    if c.id in BEFORE_RUN:
        assert not started, "the check must run before the MLflow run starts"


def test_a_member_error_that_repeats_is_not_retried(
    project: Path,  # noqa: F811
    base: dict[str, Any],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A member whose fit raises the estimator's own ValueError fails the stage at once,
    naming the member and the error, after one try although compute.retries=2."""
    marks = tmp_path_factory.mktemp("fit-attempts")  # outside the folders checked for leftovers

    def setup(proj: Path, tmp: Path) -> dict[str, Any]:
        return {
            # FaultyKMeans has no parameter constraints of its own: the MiniBatchKMeans it
            # wraps refuses n_init=0 only inside fit, on the worker.
            "model.estimator._target_": "tests.hardening.estimators.FaultyKMeans",
            "model.estimator.marker_dir": str(marks),
            "trust.modules": ["tests"],
            "trust.params": ["marker_dir"],
            "model.estimator.n_init": 0,
            "compute.retries": 2,
            "ensemble.size": 1,
        }

    c = Case(
        "deterministic-member-error",
        "train",
        r"member-000 failed: InvalidParameterError: The 'n_init' parameter of MiniBatchKMeans "
        r"must be .* Got 0 instead\. The same error comes on every try, so it is not retried",
        setup,
        failed_run=r"ConfigError: member-000 failed",
    )
    check_case(c, project, base, tmp_path, capfd)
    assert len(list(marks.iterdir())) == 1  # fitted once, not 1 + compute.retries times


def test_space_size_counts_distinct_members() -> None:
    from geoensemble.ensemble.space import distributions, space_size

    assert space_size(distributions({})) is None  # members differ by their seed alone
    assert space_size(distributions({"k": [4, 5, 5, 6]})) == 3
    assert (
        space_size(distributions({"k": {"low": 2, "high": 10, "step": 2}, "j": ["a", "b"]})) == 10
    )
    assert space_size(distributions({"tol": {"low": 0.0, "high": 1.0, "step": 0.25}})) == 5
    assert space_size(distributions({"k": [4], "tol": {"low": 1e-4, "high": 1e-2}})) is None


def test_a_params_file_with_anchors_within_bounds_still_loads(
    base: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Anchors and aliases are allowed; only their expansion is bounded."""
    import yaml

    from geoensemble.app.validate import load_params

    text = yaml.safe_dump(base).replace("seed: ", "seed: &s ", 1)
    text += "extra_seed_note: *s\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(Exception, match="extra_seed_note"):  # an unknown key, named as usual
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    assert load_params(tmp_path / "params.yaml").seed == base["seed"]
    assert np.isfinite(base["seed"])
