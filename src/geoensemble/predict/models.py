"""Which models predict: registered versions, an ensemble's kept members, an external file.

Every member carries the feature names it was trained on (from its MLflow signature, or
declared for an external model), what kind of model it is, and where it came from, so that
each map can name its sources.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoensemble.errors import FeatureMismatchError
from geoensemble.tracking import Tracker

log = logging.getLogger("geoensemble")

CLUSTER, CLASSIFIER, REGRESSOR = "cluster", "classifier", "regressor"


@dataclass
class LoadedMember:
    """One model of the prediction, with its provenance."""

    label: str  # used in file names
    model: Any
    feature_names: list[str]
    uri: str
    name: str | None = None  # registered model name
    version: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    # Class value (as a string) -> name, recorded with the model at registration.
    class_names: dict[str, str] | None = None
    external: bool = False  # trained elsewhere: no imputer of its own (see nan_policy)

    @property
    def kind(self) -> str:
        return model_kind(self.model)


def final_step(model: Any) -> Any:
    """The estimator at the end of a pipeline (or the model itself)."""
    return model[-1] if hasattr(model, "steps") else model


def steps_of(model: Any) -> list[Any]:
    """The estimators of a pipeline, in order (or the model itself)."""
    return [s for _, s in model.steps] if hasattr(model, "steps") else [model]


def task_modules(models: Iterable[Any]) -> list[str]:
    """What a worker imports to run the blocks of ``models``: the block task's modules, the
    readers of scenes and feature stores, and each step's own module (e.g.
    ``sklearn.cluster._kmeans``), preloaded by a LocalCluster's workers as they start
    (:func:`geoensemble.compute.dask_client`) instead of on their first block."""
    mods = [
        "geoensemble.predict.blocks",
        "geoensemble.predict.combine",
        "geoensemble.io.stack",
        "zarr",
    ]
    for model in models:
        for est in steps_of(model):
            mod = type(est).__module__
            # never __main__: a worker importing it would run the stage's script again
            if mod not in mods and not mod.startswith("__") and mod != "builtins":
                mods.append(mod)
    return mods


@contextlib.contextmanager
def threads_held(models: Iterable[Any], n: int) -> Iterator[None]:
    """Inside the block, every step of ``models`` predicts on at most ``n`` threads of its
    own; their settings are restored after.

    A fitted estimator keeps the thread counts it was fitted with: the K-Means family its
    ``_n_threads`` (the OpenMP threads of the machine it was fitted on, passed explicitly
    to its parallel loop, so ``threadpoolctl`` limits do not reach it) and ensembles their
    ``n_jobs``. Blocks predicted in parallel, on threads or dask workers, each get their
    share of the cores instead: without it a "single-thread" worker ran K-Means on every
    core, and two of them took longer than one.
    """
    saved: list[tuple[Any, str, Any]] = []
    for model in models:
        for est in steps_of(model):
            for attr in ("_n_threads", "n_jobs"):
                if hasattr(est, attr):
                    saved.append((est, attr, getattr(est, attr)))
                    setattr(est, attr, n)
    try:
        yield
    finally:
        for est, attr, value in reversed(saved):
            setattr(est, attr, value)


def model_kind(model: Any) -> str:
    """``cluster``, ``classifier`` or ``regressor``, from scikit-learn's estimator tags."""
    from sklearn.base import is_classifier, is_regressor

    est = final_step(model)
    if is_regressor(est):
        return REGRESSOR
    if is_classifier(est) or hasattr(est, "classes_"):
        return CLASSIFIER
    return CLUSTER


def n_classes_of(model: Any) -> int:
    """How many class codes a classifier or clusterer can output."""
    est = final_step(model)
    if hasattr(est, "classes_"):
        return len(est.classes_)
    for attr in ("n_clusters", "n_components"):
        if isinstance(getattr(est, attr, None), int | np.integer):
            return int(getattr(est, attr))
    raise TypeError(f"cannot tell how many classes {type(est).__name__} predicts")


def check_features(model_names: list[str], scene_names: list[str], *, where: str) -> list[str]:
    """The scene's features in the model's order, or an error listing missing and extra.

    Extra scene features are only an error when the model lacks some: a scene may carry more
    layers than a model uses, and the order is always taken from the model.
    """
    missing = [n for n in model_names if n not in scene_names]
    extra = [n for n in scene_names if n not in model_names]
    if missing:
        raise FeatureMismatchError(
            f"{where} lacks feature(s) {missing} that the model was trained on "
            f"(extra in the scene: {extra or 'none'}): build the scene with the same "
            f"features config as the training run"
        )
    return list(model_names)


def _stem(uri: str, name: str | None, version: str | None) -> str:
    """The member's label in map file names: safe as one file name part, whatever the URI."""
    if uri.startswith("models:/") and "@" in uri:
        stem = uri[len("models:/") :].replace("@", "_")
    elif name and version:
        stem = f"{name}_v{version}"
    else:
        stem = uri.replace(":/", "_")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._") or "model"


def registered_member(
    tracker: Tracker, uri: str, *, trusted_types: Sequence[str] = ()
) -> LoadedMember:
    """A logged or registered model of ``tracker``'s store, loaded with its signature's
    feature names.

    ``trusted_types`` are the types its file may hold beyond geoensemble's
    allow-list.
    """
    loaded = tracker.load_model(uri, trusted_types=trusted_types)
    model_id = None
    class_names = None
    if loaded.tags is not None and not loaded.version:  # a logged model, not registered
        model_id, class_names = loaded.model_id, class_names_of(loaded.tags)
    elif loaded.name and loaded.version:
        # Read with the version when it was loaded (no further call to the store).
        if loaded.tags is not None:
            model_id = loaded.model_id
            class_names = class_names_of(loaded.tags)
        else:
            model_id = tracker.model_id_of(loaded.name, loaded.version)
            class_names = registered_class_names(tracker, loaded.name, loaded.version)
    return LoadedMember(
        label=_stem(uri, loaded.name, loaded.version),
        model=loaded.model,
        feature_names=list(loaded.feature_names),
        uri=uri,
        name=loaded.name,
        version=loaded.version,
        run_id=loaded.run_id,
        model_id=model_id,
        class_names=class_names,
    )


def registered_class_names(tracker: Tracker, name: str, version: str) -> dict[str, str] | None:
    """The class names recorded on a registered model version (:data:`CLASS_NAMES_TAG`),
    or None when it has none (clusterers, models registered elsewhere or before)."""
    return class_names_of(tracker.version_tags(name, version))


def class_names_of(tags: dict[str, str]) -> dict[str, str] | None:
    """The class names in a registered version's tags (:data:`CLASS_NAMES_TAG`), or None."""
    import json

    from geoensemble.classes import CLASS_NAMES_TAG

    raw = tags.get(CLASS_NAMES_TAG)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:  # a malformed tag only costs the names, never the prediction
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}


def env_threads() -> int:
    """Cores available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
