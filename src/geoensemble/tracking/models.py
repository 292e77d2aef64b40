"""Scikit-learn models in the store: logged as skops files with their sha256, loaded only
from trusted types and only if the file is the one registered."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SKOPS_SHA256_TAG = "geoensemble.skops_sha256"
SKOPS_FILE = "model.skops"  # where mlflow.sklearn stores a skops model in its folder


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged pipeline, given so MLflow need not infer them."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]


def import_skops() -> Any:
    """``skops.io``, imported without its scan of every scikit-learn estimator.

    At import skops builds its default allow-list with ``sklearn.utils.all_estimators()``,
    which imports every scikit-learn module (~0.6 s of a predict stage that needs one
    estimator). When skops is not imported yet, the scan is replaced by an empty list for
    the import; that list is then empty in this process, and :func:`public_estimators` gives
    the same trust to the estimators a file holds (see :func:`_load_skops`). Once skops is
    imported (by MLflow, or earlier here) it is used as it is.
    """
    import sys

    if "skops.io" not in sys.modules:
        import sklearn.utils

        scan = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = lambda *args, **kwargs: []
        try:
            import skops.io
        finally:
            sklearn.utils.all_estimators = scan
    import skops.io

    return skops.io


def public_estimators(types: Sequence[str]) -> list[str]:
    """The ``types`` (dotted names) that skops' default allow-list trusts as scikit-learn
    estimators: what ``sklearn.utils.all_estimators()`` lists, decided per type.

    A type qualifies when it is a class defined in a module under ``sklearn.`` (not in its
    tests, externals or experimental parts), named without a leading ``_``, a concrete
    subclass of ``BaseEstimator`` (not itself), and exported under its name by the public
    package it is defined in (``sklearn.cluster._kmeans.KMeans`` is ``sklearn.cluster.KMeans``).
    Importing the module is safe: scikit-learn's modules define, they do not act.
    """
    import importlib
    import inspect

    from sklearn.base import BaseEstimator

    ignored = {"tests", "externals", "setup", "conftest", "experimental", "estimator_checks"}
    out = []
    for name in types:
        module, _, cls_name = name.rpartition(".")
        parts = module.split(".")
        if (
            parts[0] != "sklearn"
            or not all(p.isidentifier() for p in [*parts, cls_name])
            or cls_name.startswith("_")
            or ignored & set(parts)
        ):
            continue
        public = ".".join(parts[: next((i for i, p in enumerate(parts) if p[:1] == "_"), None)])
        try:
            cls = getattr(importlib.import_module(module), cls_name, None)
            exported = getattr(importlib.import_module(public), cls_name, None)
        except Exception:  # not importable: not an estimator of this scikit-learn
            continue
        if (
            isinstance(cls, type)
            and issubclass(cls, BaseEstimator)
            and exported is cls
            and cls is not BaseEstimator
            and not inspect.isabstract(cls)
        ):
            out.append(name)
    return out


def skops_trusted_types(pipeline: Any) -> list[str]:
    """Types a pipeline we just fitted needs trusted for MLflow's skops format to load it.

    skops refuses types outside its default allow-list on load, and MLflow checks this when
    saving: ``SimpleImputer`` (``numpy.dtype``), geoensemble's own transformers and
    ``SelectKBest``'s score function all need it. The list is written into the model's
    ``MLmodel`` file for MLflow's own check when saving; loading never reads it (trust comes
    from :mod:`geoensemble.trust` and ``trust.types``, see :func:`load_sklearn_flavour`).
    In a process that imported skops with :func:`import_skops`, the estimators are listed
    too (MLflow checks the list against skops' allow-list of this process).
    """
    sio = import_skops()
    return sorted(sio.get_untrusted_types(data=sio.dumps(pipeline)))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version: its number, tags, aliases and member run."""

    name: str
    version: str
    tags: dict[str, str]
    aliases: list[str]
    run_id: str | None


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=str(mv.name),
        version=str(mv.version),
        tags=dict(mv.tags or {}),
        aliases=list(getattr(mv, "aliases", None) or []),
        run_id=mv.run_id,
    )


@dataclass(frozen=True)
class LoadedModel:
    """A model from the registry with what predict needs to check and record."""

    uri: str
    model: Any
    feature_names: list[str]
    name: str | None
    version: str | None
    run_id: str | None
    model_id: str | None = None  # the logged model behind a registered version
    tags: dict[str, str] | None = None  # a registered version's tags


def model_id_from(mv: Any) -> str | None:
    """The MLflow 3 logged-model id behind a registered version (its ``model_id``, else its
    ``models:/<model id>`` source)."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    src = str(getattr(mv, "source", "") or "")
    if src.startswith("models:/m-"):
        return src.split("models:/", 1)[1].split("/", 1)[0]
    return None


def resolve_models_uri(client: Any, uri: str) -> str:
    """Where the files of ``uri`` are, when it is a ``models:/`` URI (else ``uri``).

    MLflow resolves ``models:/<name>/<version>``, ``models:/<name>@<alias>`` and
    ``models:/<model id>`` with a client of its process-wide registry URI, whatever store a
    download names; the client of the model's own store resolves them here instead.
    """
    for _ in range(3):  # a version's source may itself be a models:/<model id> URI
        if not uri.startswith("models:/"):
            break
        ref = uri[len("models:/") :]
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = str(client.get_model_version_by_alias(name, alias).version)
            uri = str(client.get_model_version_download_uri(name, version))
        elif "/" in ref:
            name, version = ref.rsplit("/", 1)
            uri = str(client.get_model_version_download_uri(name, version))
        else:
            uri = str(client.get_logged_model(ref).artifact_location)
    return uri


def _download(uri: str, dst: str, tracking_uri: str | None, client: Any = None) -> Path:
    """The files of the model ``uri``, fetched from the store ``tracking_uri`` (with its
    ``client``, which resolves ``models:/`` URIs) into ``dst``."""
    import mlflow

    if client is not None:
        uri = resolve_models_uri(client, uri)
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=dst, tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
    )


def log_sklearn_model(
    client: Any,
    tracking_uri: str,
    *,
    experiment_id: str,
    run_id: str,
    pipeline: Any,
    feature_names: list[str],
    example: np.ndarray,
) -> tuple[str, str, str]:
    """Log ``pipeline`` as an MLflow 3 logged model of run ``run_id`` through ``client``;
    return its id, where its files are and the sha256 of its ``model.skops`` as stored.

    What ``mlflow.sklearn.log_model`` does, with the client of one store rather than the
    process-wide tracking URI: create the logged model (with the run's params), link it to
    the run as an output with the run's metrics, save it as skops in a temporary folder,
    upload it, and mark it READY (FAILED if any step fails). The signature names the input
    features (``example`` gives their types). No input example is stored: MLflow would
    reload the model to check it, ~0.1 s per model for a file that only shows one row.
    """
    import mlflow.sklearn
    import pandas as pd
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
    from mlflow.models import Model, infer_signature

    frame = pd.DataFrame(example, columns=feature_names)
    signature = infer_signature(frame, pipeline.predict(example))
    run = client.get_run(run_id)
    model = client.create_logged_model(
        experiment_id, name="model", source_run_id=run_id, params=dict(run.data.params)
    )
    model_id = str(model.model_id)
    try:
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        # The run's metrics as the model's too, as mlflow.sklearn.log_model records them.
        metrics = [
            Metric(m.key, m.value, m.timestamp, m.step, run_id=run_id, model_id=model_id)
            for key in run.data.metrics
            for m in client.get_metric_history(run_id, key)
            if m.step == 0 and getattr(m, "model_id", None) is None
        ]
        for n in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[n : n + 1000])
        with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
            local = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                pipeline,
                str(local),
                mlflow_model=Model(
                    artifact_path=model.artifact_location,
                    model_uuid=model_id,
                    run_id=run_id,
                    model_id=model_id,
                ),
                serialization_format="skops",
                signature=signature,
                pip_requirements=pip_requirements(),
                skops_trusted_types=skops_trusted_types(pipeline),
            )
            client.log_model_artifacts(model_id, str(local))
        # The digest of the file as stored, so that loading the version can tell a changed file.
        with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
            local = _download(f"models:/{model_id}", tmp, tracking_uri, client)
            digest = file_sha256(local / SKOPS_FILE)
    except BaseException:
        import contextlib

        with contextlib.suppress(Exception):
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model_id, LoggedModelStatus.READY)
    return model_id, str(model.artifact_location), digest


def read_model(
    client: Any,
    uri: str,
    tracking_uri: str,
    *,
    trusted_types: Sequence[str] = (),
    expected_sha256: str | None = None,
) -> tuple[Any, Any]:
    """The model at ``uri`` in the store ``tracking_uri`` (see :func:`load_sklearn_flavour`)
    and its ``MLmodel`` description (flavours, signature); ``client`` is the store's.

    Raises
    ------
    MlflowException
        If there is no such model (or it has no ``MLmodel`` file).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = _download(uri, tmp, tracking_uri, client)
        if not (local / "MLmodel").is_file():
            raise MlflowException(f"{uri} is not an MLflow model (it has no MLmodel file)")
        info = Model.load(str(local / "MLmodel"))
        model = _load_skops(
            uri, local, info.flavors, trusted_types=trusted_types, expected_sha256=expected_sha256
        )
    return model, info


def load_sklearn_flavour(
    uri: str,
    flavors: Mapping[str, Any],
    *,
    trusted_types: Sequence[str] = (),
    expected_sha256: str | None = None,
    tracking_uri: str | None = None,
) -> Any:
    """The model of a logged ``sklearn`` flavour stored with skops, built only from trusted types.

    Trust comes from geoensemble, never from the artifact: the types the file may hold are
    :data:`geoensemble.trust.SKOPS_TYPES` (beyond skops' own defaults) plus
    ``trusted_types``; the ``skops_trusted_types`` the model's ``MLmodel`` lists are ignored.
    A pickle would run whatever code the file holds, so a model stored as a (cloud)pickle is
    refused; so is a file whose sha256 is not the one recorded at registration.

    Raises
    ------
    ConfigError
        If the model has no ``sklearn`` flavour, or is stored as a pickle.
    InputFileError
        If its ``model.skops`` is not the file registered, is damaged or truncated, or holds
        types that are not trusted (the message names them and ``trust.types``).
    """
    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = _download(uri, tmp, tracking_uri)
        return _load_skops(
            uri, local, flavors, trusted_types=trusted_types, expected_sha256=expected_sha256
        )


def _load_skops(
    uri: str,
    local: Path,
    flavors: Mapping[str, Any],
    *,
    trusted_types: Sequence[str] = (),
    expected_sha256: str | None = None,
) -> Any:
    """The model in the downloaded folder ``local`` of ``uri`` (see
    :func:`load_sklearn_flavour`)."""
    from geoensemble.errors import ConfigError, InputFileError
    from geoensemble.trust import skops_trusted

    sio = import_skops()

    conf = flavors.get("sklearn")
    if conf is None:
        raise ConfigError(
            f"{uri} was logged with the {sorted(flavors)} flavour(s), not mlflow.sklearn: "
            f"predict loads scikit-learn models only; log it with mlflow.sklearn.log_model"
        )
    fmt = conf.get("serialization_format", "pickle")
    if fmt != "skops":
        raise ConfigError(
            f"{uri} is stored as a {fmt} file, and loading a pickle runs code stored in the "
            f"file: log it again with serialization_format='skops' (as the train stage "
            f"does), or, only if you trust its source, predict it as a file with "
            f"predict.external.path and predict.external.allow_pickle=true"
        )
    damaged = (
        f"its {SKOPS_FILE} is damaged or truncated: retrain (python pipelines/train.py), or "
        f"register an intact copy of the model again"
    )
    import hashlib

    allowed = skops_trusted(trusted_types)
    path = local / SKOPS_FILE
    if not path.is_file():
        raise InputFileError(f"cannot load {uri}: {damaged} (the file is missing)")
    # Read once: the bytes checked are the bytes loaded (the file may be the store's own).
    data = path.read_bytes()
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise InputFileError(
            f"cannot load {uri}: its {SKOPS_FILE} is not the file registered (its sha256 "
            f"differs from the tag {SKOPS_SHA256_TAG}), so it was changed or damaged "
            f"after train logged it: retrain (python pipelines/train.py), or register "
            f"the intended model again"
        )
    try:
        # Reads the file's schema only: nothing is imported or built yet.
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # zip, JSON and schema errors of a damaged file
        raise InputFileError(
            f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from None
    # The estimators skops' default allow-list would have trusted (its scan may be skipped).
    allowed = sorted({*allowed, *public_estimators(sorted(set(found) - set(allowed)))})
    untrusted = sorted(set(found) - set(allowed))
    if untrusted:
        raise InputFileError(
            f"cannot load {uri}: its {SKOPS_FILE} holds types geoensemble does not trust "
            f"{untrusted}: retrain, or, only if you trust where this model comes from, "
            f"list them in trust.types (e.g. trust.types=[{untrusted[0]}])"
        )
    try:
        return sio.loads(data, trusted=allowed)
    except Exception as exc:  # arrays or attributes of a damaged file
        raise InputFileError(
            f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
        ) from None
