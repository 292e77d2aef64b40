"""Stages depend on the parameters that change their output, not on whole sections: a key
that only changes how a stage runs (progress bars, threads) does not make it stale, and
`dvc exp show --param-deps` lists what matters."""

from __future__ import annotations

import dataclasses

import yaml

from geoensemble.app.config import PredictConfig, TrackingConfig
from tests.conftest import ROOT

# predict keys that change how the maps are made, never what they hold
PREDICT_RUNTIME_ONLY = {"progress", "threads", "scheduler", "overwrite"}


def stage_params(stage: str) -> list[str]:
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return [str(p) for p in doc["stages"][stage]["params"]]


def test_predict_depends_on_every_key_that_changes_the_maps() -> None:
    listed = {
        p.removeprefix("predict.") for p in stage_params("predict") if p.startswith("predict.")
    }
    keys = {f.name for f in dataclasses.fields(PredictConfig)}
    assert "predict" not in stage_params("predict")  # not the whole section
    assert listed == keys - PREDICT_RUNTIME_ONLY, (
        f"dvc.yaml predict params: add {sorted(keys - PREDICT_RUNTIME_ONLY - listed)}, "
        f"remove {sorted(listed - keys | listed & PREDICT_RUNTIME_ONLY)}"
    )


def test_train_depends_on_where_it_records_not_how_long_it_waits() -> None:
    """tracking.timeout bounds waiting for a server: changing it retrains nothing."""
    listed = {
        p.removeprefix("tracking.") for p in stage_params("train") if p.startswith("tracking.")
    }
    assert "tracking" not in stage_params("train")
    assert listed == {f.name for f in dataclasses.fields(TrackingConfig)} - {"timeout"}
