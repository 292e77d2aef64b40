"""Promotion as a deliberate act: which training may move ``@champion``, what a degenerate
candidate is, and ``geoensemble promote`` on a real SQLite MLflow store (real registered
versions, the real command line in a subprocess)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from geoensemble import tracking
from geoensemble.app import cli
from geoensemble.app import params as app_params
from geoensemble.app.candidates import training_origin
from geoensemble.app.config import TrackingConfig
from geoensemble.app.tracker import tracker_for
from geoensemble.tracking.promotion import (
    DVC_EXP,
    MANUAL,
    MLFLOW_RUN,
    PIPELINE,
    SWEEP,
    UNCOMMITTED,
    degenerate,
)
from tests.conftest import run, tool
from tests.integration.conftest import reset_mlflow_uris

GOOD = {"criterion": "aic", "criterion_value": "1234.5", "kind": "cluster", "n_classes": "6"}
ONE, NAN = {"n_classes": "1"}, {"kappa": "nan"}


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        (GOOD, None),
        ({**GOOD, "criterion_value": "nan"}, "its criterion aic is nan"),
        ({**GOOD, "criterion_value": "inf"}, "its criterion aic is inf"),
        ({**GOOD, "n_classes": "1"}, "it uses only one cluster"),
        (
            {"criterion": "kappa", "criterion_value": "0.8", "kind": "classifier"} | ONE,
            "it uses only one class",
        ),
        (
            {"criterion": "log_loss", "criterion_value": "0.3", "kind": "classifier"} | NAN,
            "its kappa is nan",
        ),
        ({"rank": "1"}, "it records no criterion"),
    ],
    ids=["good", "nan", "inf", "one-cluster", "one-class", "kappa-nan", "untagged"],
)
def test_degenerate_candidates_are_named(tags: dict[str, str], why: str | None) -> None:
    got = degenerate(tags)
    assert got == why if why is None else got is not None and got.startswith(why)


# --------------------------------------------------------------------------- who trains
@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repo with a committed params.yaml."""
    run(["git", "init", "-q"], tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 42\n")
    run(["git", "add", "params.yaml"], tmp_path)
    run(["git", "commit", "-qm", "params"], tmp_path)
    return tmp_path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (tracking.SWEEP_ID_VAR, tracking.SWEEP_RUN_VAR, "DVC_EXP_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def origin_with(mp: pytest.MonkeyPatch, params: Path | None, *overrides: str) -> str:
    mp.setattr(app_params, "_params_file", None if params is None else (params, tuple(overrides)))
    return training_origin().kind


def test_only_the_committed_params_yaml_outside_experiments_is_the_pipeline(
    project: Path, clean_env: pytest.MonkeyPatch
) -> None:
    mp, params = clean_env, project / "params.yaml"
    assert origin_with(mp, params) == PIPELINE
    assert origin_with(mp, None) == MANUAL  # composed by Hydra: python pipelines/train.py
    assert origin_with(mp, params, "model.n_clusters=5") == UNCOMMITTED
    other = project / "other.yaml"
    other.write_text("seed: 1\n")
    assert origin_with(mp, other) == MANUAL
    params.write_text("seed: 43\n")  # edited, not committed
    assert origin_with(mp, params) == UNCOMMITTED
    run(["git", "add", "params.yaml"], project)  # staged is not committed either
    assert origin_with(mp, params) == UNCOMMITTED
    run(["git", "commit", "-qm", "seed 43"], project)
    assert origin_with(mp, params) == PIPELINE
    # the environment of an experiment, a sweep and mlflow run wins over the command line
    mp.setenv("MLFLOW_RUN_ID", "0" * 32)
    assert origin_with(mp, params) == MLFLOW_RUN
    mp.setenv("DVC_EXP_NAME", "bushy-fern")
    o = training_origin()  # its versions say so in tags, never in an alias
    assert (o.kind, o.detail) == (DVC_EXP, "DVC experiment bushy-fern")
    mp.setenv(tracking.SWEEP_ID_VAR, "20250101-120000-abc123")
    assert origin_with(mp, params) == SWEEP


def test_untracked_params_and_no_git(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "nogit"
    bare.mkdir()
    (bare / "params.yaml").write_text("seed: 42\n")
    # outside git nothing tells a committed file from an edited one: only dvc repro counts
    clean_env.delenv("DVC_STAGE", raising=False)
    assert origin_with(clean_env, bare / "params.yaml") == MANUAL
    clean_env.setenv("DVC_STAGE", "train")
    assert origin_with(clean_env, bare / "params.yaml") == PIPELINE
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    (repo / "params.yaml").write_text("seed: 42\n")
    assert origin_with(clean_env, repo / "params.yaml") == UNCOMMITTED
    assert training_origin().detail.endswith(
        "params.yaml is untracked in git (not the committed params.yaml)"
    )


# --------------------------------------------------------------------------- promote
@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrackingConfig]:
    monkeypatch.setenv("GEOENSEMBLE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    reset_mlflow_uris()
    yield TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", model_name="geoensemble")
    reset_mlflow_uris()


def register(
    t: TrackingConfig, candidates: list[dict[str, str]], seed: int = 0
) -> tuple[str, list[str]]:
    """One ensemble run whose members are registered with ``candidates`` as version tags
    (fitted on data drawn with ``seed``: the same member twice is registered once)."""
    from sklearn.cluster import KMeans

    tracker = tracker_for(t)
    exp = tracker.open()
    X = np.random.default_rng(seed).normal(size=(60, 2)).astype(np.float32)
    versions: list[str] = []
    with tracker.parent_run(exp, run_name="ensemble-test", params={}, tags={}) as parent:
        for i, tags in enumerate(candidates):
            run_id = tracker.log_child_run(
                exp, parent, run_name=f"member-{i}", params={}, metrics={}, tags={}
            )
            model = KMeans(2 + i, n_init=1, random_state=0).fit(X)
            versions.append(
                tracker.log_model(
                    run_id,
                    model,
                    feature_names=["a", "b"],
                    example=X[:3],
                    model_name=t.model_name,
                    tags={"ensemble_run_id": parent, "member": f"member-{i}", **tags},
                )
            )
    return parent, versions


def promote(t: TrackingConfig, *args: str) -> subprocess.CompletedProcess[str]:
    """``geoensemble promote args`` against the store ``t``."""
    return subprocess.run(
        [
            tool("geoensemble"),
            "promote",
            *args,
            f"tracking.uri={t.uri}",
            f"tracking.model_name={t.model_name}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(t),
        check=False,
    )


def _env(t: TrackingConfig) -> dict[str, str]:
    from tests.conftest import tool_env

    assert t.uri is not None
    return tool_env(GEOENSEMBLE_LOG_DIR=str(Path(t.uri.removeprefix("sqlite:///")).parent))


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("geoensemble promote:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


SPACE = {"criterion": "aic", "direction": "minimize", "score_space": "abc", "kind": "cluster"}


def test_promote_by_version_moves_champion_and_records_why(store: TrackingConfig) -> None:
    _, (v1, v2, v3) = register(
        store,
        [
            {**SPACE, "criterion_value": "300", "n_classes": "2"},
            {**SPACE, "criterion_value": "200", "n_classes": "3"},
            {**SPACE, "criterion_value": "100", "n_classes": "1"},  # one cluster: degenerate
        ],
    )
    # training sets no champion
    assert tracker_for(store).alias_version(store.model_name, "champion") is None

    done = promote(store, f"version={v2}", "reason=checked the map by eye")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        f"geoensemble promote: @champion of model 'geoensemble' moved from version none to "
        f"{v2} (checked the map by eye)"
    ]
    assert tracker_for(store).alias_version(store.model_name, "champion") == v2
    tags = tracker_for(store).model_version(store.model_name, v2).tags
    assert tags["promoted_by"] == f"promote version={v2}"
    assert tags["promotion_reason"] == "checked the map by eye"
    assert tags["previous_champion"] == "none" and tags["promoted_at"].endswith("Z")

    moved = promote(store, f"version={v1}")
    assert moved.returncode == 0, moved.stderr
    assert f"moved from version {v2} to {v1}" in moved.stdout
    assert tracker_for(store).model_version(store.model_name, v1).tags["previous_champion"] == v2

    refused = promote(store, f"version={v3}")
    line = one_error_line(refused)
    assert line == (
        f"geoensemble promote: error: version {v3} of model 'geoensemble' is not promoted to "
        f"@champion: it uses only one cluster: promote another version (geoensemble promote "
        f"version=N), or retrain"
    )
    assert tracker_for(store).alias_version(store.model_name, "champion") == v1  # unchanged

    missing = one_error_line(promote(store, "version=99"))
    assert "model 'geoensemble' has no version 99" in missing
    neither = one_error_line(promote(store))
    assert "needs exactly one of promote.version and promote.rule" in neither


def test_promote_by_rule_compares_only_comparable_candidates(store: TrackingConfig) -> None:
    parent, (v1, v2, v3) = register(
        store,
        [
            {**SPACE, "criterion_value": "300", "n_classes": "2"},
            {**SPACE, "criterion_value": "200", "n_classes": "3"},
            {**SPACE, "criterion_value": "nan", "n_classes": "4"},
        ],
    )
    done = promote(store, "rule=best", f"ensemble={parent}")
    assert done.returncode == 0, done.stderr
    assert f"moved from version none to {v2} (best aic (minimize) = 200" in done.stdout
    assert "1 degenerate skipped" in done.stdout
    assert tracker_for(store).model_version(store.model_name, v2).tags["promoted_by"] == (
        f"promote rule=best ensemble={parent}"
    )
    latest = promote(store, "rule=best", "ensemble=latest")
    assert latest.returncode == 0 and "already is version" in latest.stdout, latest.stderr

    _, (v4,) = register(
        store, [{**SPACE, "score_space": "other", "criterion_value": "1", "n_classes": "2"}], 1
    )
    for v in (v1, v2, v3, v4):  # one experiment holding both ensembles
        tracker_for(store).set_version_tags(store.model_name, v, {"dvc_exp_name": "mixed"})
    line = one_error_line(promote(store, "rule=best", "ensemble=dvc_exp_name:mixed"))
    assert "the 4 candidates of promote.ensemble='dvc_exp_name:mixed' are not comparable" in line
    assert "narrow promote.ensemble to one ensemble" in line
    assert tracker_for(store).alias_version(store.model_name, "champion") == v2
    nothing = one_error_line(promote(store, "rule=best", "ensemble=sweep_id:none"))
    assert "no registered version of model 'geoensemble' belongs to it" in nothing


def test_promote_keys_need_no_section_and_a_reason_is_free_text() -> None:
    from geoensemble.app.params import compose
    from tests.conftest import ROOT

    args = cli.promote_shorthand(["version=2", "reason=k=5 reads [better], it's", "seed=1"])
    cfg = compose(args, config_dir=ROOT / "conf")
    assert (cfg.promote.version, cfg.promote.reason) == (2, "k=5 reads [better], it's")
    assert cfg.seed == 1  # any other override is Hydra's as usual
    assert cli.promote_shorthand(["--params", "p.yaml", "reason=x=1"])[2] == "promote.reason=x=1"


def test_the_params_file_mark_ends_with_its_stage(tmp_path: Path) -> None:
    """In one process (the API, tests) a later stage composed by Hydra is not the pipeline."""
    import yaml

    from geoensemble.app.config import to_dict
    from geoensemble.app.params import compose
    from geoensemble.app.validate import validate
    from tests.conftest import ROOT

    params = tmp_path / "params.yaml"
    cfg = to_dict(
        validate(compose([f"tracking.uri=sqlite:///{tmp_path}/m.db"], config_dir=ROOT / "conf"))
    )
    params.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as stop:  # neither version nor rule: exit 2
        cli.stage_main("promote", ["--params", str(params)])
    assert stop.value.code == 2 and app_params.params_file() is None
