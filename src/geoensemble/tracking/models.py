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
# The content of a fitted pipeline (sha1 of joblib.hash: its arrays and parameters, unlike
# the skops file, whose bytes change from one save to the next): a member trained again
# identically has the same digest, and is not registered twice.
MODEL_DIGEST_TAG = "geoensemble.model_digest"
# Versions geoensemble registered: the only ones `geoensemble registry prune` may delete.
REGISTERED_BY_TAG = "geoensemble.registered_by"


def model_digest(pipeline: Any) -> str:
    """The digest of a fitted pipeline's content (see :data:`MODEL_DIGEST_TAG`)."""
    import joblib

    return str(joblib.hash(pipeline, hash_name="sha1"))


# where mlflow.sklearn stores a skops model in its folder
SKOPS_FILE = "model.skops"


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged pipeline, given so MLflow need not infer them."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]


def skops_trusted_types(pipeline: Any) -> list[str]:
    """Types a pipeline we just fitted needs trusted for MLflow's skops format to load it.

    skops refuses types outside its default allow-list on load, and MLflow checks this when
    saving: ``SimpleImputer`` (``numpy.dtype``), geoensemble's own transformers and
    ``SelectKBest``'s score function all need it. The list is written into the model's
    ``MLmodel`` file for MLflow's own check when saving; loading never reads it (trust comes
    from :mod:`geoensemble.trust` and ``trust.types``, see :func:`load_sklearn_flavour`).
    """
    import skops.io as sio

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


# The logged model a registered version was made from (its source is the model's files).
MODEL_ID_TAG = "geoensemble.model_id"


def model_id_from(mv: Any) -> str | None:
    """The MLflow 3 logged-model id behind a registered version (its ``model_id``, our
    :data:`MODEL_ID_TAG`, else its ``models:/<model id>`` source)."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    tag = (getattr(mv, "tags", None) or {}).get(MODEL_ID_TAG)
    if tag:
        return str(tag)
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
    import pandas as pd
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import infer_signature

    frame = pd.DataFrame(example, columns=feature_names)
    signature = infer_signature(frame, pipeline.predict(example))
    run = client.get_run(run_id)
    model = client.create_logged_model(
        experiment_id, name="model", source_run_id=run_id, params=dict(run.data.params)
    )
    model_id = str(model.model_id)
    try:
        client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])
        _log_run_metrics(client, run, run_id, model_id)
        _upload_skops(client, pipeline, model, run_id, signature)
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


def _log_run_metrics(client: Any, run: Any, run_id: str, model_id: str) -> None:
    """Log the run's metrics as the model's too, as ``mlflow.sklearn.log_model`` records them."""
    from mlflow.entities import Metric

    metrics = [
        Metric(m.key, m.value, m.timestamp, m.step, run_id=run_id, model_id=model_id)
        for key in run.data.metrics
        for m in client.get_metric_history(run_id, key)
        if m.step == 0 and getattr(m, "model_id", None) is None
    ]
    for n in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[n : n + 1000])


def _upload_skops(client: Any, pipeline: Any, model: Any, run_id: str, signature: Any) -> None:
    """Save ``pipeline`` as skops in a temporary folder and upload it as ``model``'s files."""
    import mlflow.sklearn
    from mlflow.models import Model

    model_id = str(model.model_id)
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
        types that are not trusted (the message names them and ``trusted_types``).
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
            f"does), or, only if you trust its source, predict its file as an external model "
            f"that allows pickles"
        )
    damaged = (
        f"its {SKOPS_FILE} is damaged or truncated: retrain (python pipelines/train.py), or "
        f"register an intact copy of the model again"
    )
    import hashlib

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
    return load_skops_bytes(data, where=uri, trusted_types=trusted_types, damaged=damaged)


def load_skops_bytes(
    data: bytes, *, where: str, trusted_types: Sequence[str] = (), damaged: str = ""
) -> Any:
    """The object of a skops file's bytes, built only from types geoensemble trusts.

    Trusted are skops' own defaults (scikit-learn's estimators, numpy arrays, builtin
    containers), :data:`geoensemble.trust.SKOPS_TYPES` and ``trusted_types``
    (the types the user trusts); never what the file or its ``MLmodel`` says.

    Raises
    ------
    InputFileError
        Naming ``where``, the untrusted types and ``trusted_types``, or what is damaged.
    """
    import skops.io as sio

    from geoensemble.errors import InputFileError
    from geoensemble.trust import skops_trusted

    damaged = damaged or "the file is damaged or truncated: export it again with skops.io.dump"

    def broken(exc: Exception) -> InputFileError:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        return InputFileError(f"cannot load {where}: {damaged} ({type(exc).__name__}: {first})")

    try:
        # Reads the file's schema only: nothing is imported or built yet.
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # zip, JSON and schema errors of a damaged file
        raise broken(exc) from None
    allowed = skops_trusted(trusted_types)
    untrusted = sorted(set(found) - set(allowed))
    if untrusted:
        raise InputFileError(
            f"cannot load {where}: it holds types geoensemble does not trust "
            f"{untrusted}: retrain, or, only if you trust where this model comes from, "
            f"list them in trusted_types (e.g. trusted_types=[{untrusted[0]}])",
            arguments={"trusted_types": "load_skops_bytes.trusted_types"},
        )
    try:
        return sio.loads(data, trusted=allowed)
    except Exception as exc:  # arrays or attributes of a damaged file
        raise broken(exc) from None
