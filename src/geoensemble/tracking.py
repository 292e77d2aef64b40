"""Everything MLflow: the store, parent and member runs, logged and registered models.

This is the only module that imports mlflow. The default store is SQLite ``mlflow.db`` at the
project root, given as an absolute URI; when DVC runs a stage in a temporary copy (queued and
``--temp`` experiments) ``DVC_ROOT`` names the real project root, so runs land in the real
store and not in the copy that DVC deletes afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoensemble.config import TrackingConfig
from geoensemble.errors import FeatureMismatchError, ModelNotFoundError, TrackingError

log = logging.getLogger("geoensemble")

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000


def store_root() -> Path:
    """Where the default store lives: ``GEOENSEMBLE_ROOT``, else ``DVC_ROOT``, else the cwd."""
    for var in ("GEOENSEMBLE_ROOT", "DVC_ROOT"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    return Path.cwd().resolve()


def tracking_uri(t: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<root>/mlflow.db``.

    ``mlflow run`` exports ``MLFLOW_TRACKING_URI`` with the run it created, so honouring it
    keeps that run and ours in one store.
    """
    return (
        t.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"
    )


def is_local_store(uri: str) -> bool:
    """True for stores on this machine's disk (SQLite, file), False for servers."""
    return not uri.startswith(("http://", "https://", "databricks"))


def check_server(uri: str, *, timeout: float = 10.0) -> None:
    """Fail fast when a tracking server does not answer (MLflow would retry for minutes).

    Only ``http(s)://`` stores are probed, on their ``/health`` endpoint; any HTTP answer
    (even 401/404 from a proxy) counts as reachable.

    Raises
    ------
    TrackingError
        If nothing answers at ``uri`` within ``timeout`` seconds.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    if parts.port:
        netloc += f":{parts.port}"
    health = urllib.parse.urlunsplit((parts.scheme, netloc, "/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answers: MLflow's own calls will report what is wrong
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"the MLflow tracking server {redact_uri(uri)} does not answer "
            f"({type(reason).__name__}: {reason}; waited at most {timeout:g} s): start it "
            f"(mlflow server --host 127.0.0.1 --port 5000 ...), fix tracking.uri, or use the "
            f"local store with tracking=sqlite"
        ) from None


def init_sqlite_store(uri: str) -> None:
    """Create (or migrate) a SQLite store's tables under a lock shared between processes.

    Two jobs started at once on a new ``mlflow.db`` would otherwise both run MLflow's schema
    migrations, and one fails ("duplicate column name"). The lock is taken on the store's
    folder, so no lock file is left behind. Other stores, and folders that do not exist
    (:func:`setup` reports those), are left alone.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri[len("sqlite:///") :]).parent
    if not folder.is_dir():
        return
    import mlflow

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # The first call creates the tables; any error shows again, explained, in setup.
        with contextlib.suppress(Exception):
            mlflow.MlflowClient(uri, uri).search_experiments(max_results=1)
    finally:
        os.close(fd)  # releases the lock


def setup(t: TrackingConfig) -> str:
    """Point MLflow at the store and return the experiment id (created if needed)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(t)
    check_server(uri, timeout=t.timeout)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    init_sqlite_store(uri)
    try:
        client = mlflow.MlflowClient()  # refuses unsupported URI schemes
        exp = client.get_experiment_by_name(t.experiment)
        if exp is not None:
            closed = close_orphaned_runs(exp.experiment_id)
            if closed:
                log.info(
                    "MLflow: marked KILLED %d run(s) left RUNNING by processes that no longer "
                    "exist: %s",
                    len(closed),
                    ", ".join(closed),
                )
            return str(exp.experiment_id)
        # A server chooses (and proxies) the artifact store itself; a local path would only
        # be valid on this machine.
        location = (store_root() / t.artifact_root).as_uri() if is_local_store(uri) else None
        try:
            return str(client.create_experiment(t.experiment, artifact_location=location))
        except MlflowException:
            # Two jobs starting at once on a new store: the other one created it first.
            exp = client.get_experiment_by_name(t.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)
    except MlflowException as exc:
        raise TrackingError(
            f"cannot use the MLflow store {uri}: {exc.message}. Check "
            f"tracking.uri (is the server running?)"
        ) from None
    except OSError as exc:  # e.g. the folder of a sqlite:/// store does not exist
        raise TrackingError(
            f"cannot open the MLflow store {uri}: {exc.strerror or exc} "
            f"({exc.filename or uri}). Set tracking.uri to sqlite:///<existing folder>/mlflow.db "
            f"or a server's http://host:port"
        ) from None


def run_tags() -> dict[str, str]:
    """Provenance tags: git commit of the project and the DVC experiment name when present."""
    tags = {}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=store_root(),
            timeout=10,
            check=False,
        ).stdout.strip()
        if sha:
            tags["mlflow.source.git.commit"] = sha
            tags["git_commit"] = sha
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    tags.update(sweep_tags())
    return tags


SWEEP_ID_VAR = "GEOENSEMBLE_SWEEP_ID"
SWEEP_RUN_VAR = "GEOENSEMBLE_SWEEP_RUN_ID"


def sweep_tags() -> dict[str, str]:
    """``sweep_id``, job number and overrides of a Hydra multirun job (empty otherwise).

    The sweep id comes from the environment, set by :mod:`geoensemble.sweep` in the process
    that launches the jobs, so jobs in other processes (joblib launcher) share it.
    """
    sweep_id = os.environ.get(SWEEP_ID_VAR)
    if not sweep_id:
        return {}
    tags = {"sweep_id": sweep_id}
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if HydraConfig.initialized():
        hc: Any = HydraConfig.get()  # a DictConfig at run time
        num = OmegaConf.select(hc, "job.num")
        if num is not None:
            tags["sweep_job"] = str(num)
        tags["sweep_overrides"] = " ".join(OmegaConf.select(hc, "overrides.task") or [])
    return tags


# Key names whose values are never logged (matched per dotted segment, case-insensitive).
SECRET_KEY = re.compile(
    r"(^|[._-])(password|passwd|pwd|secret|token|credentials?|api_?key|access_?key|"
    r"secret_?key|private_?key|auth|key|sig|signature)($|[._-])",
    re.IGNORECASE,
)
# user:password@ in URIs
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^/@:\s]*):[^/@\s]*@")
# name=value pairs in query strings (?token=...) and override lists (a.password=...)
_NAME_VALUE = re.compile(r"(?P<pre>^|[?&;\s])(?P<name>[\w.+~-]+)=(?P<value>[^&;#\s]*)")
REDACTED = "***"


def redact_uri(text: str) -> str:
    """``text`` with URI passwords and secret ``name=value`` pairs replaced by ``***``."""
    text = _URI_CREDENTIALS.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)

    def pair(m: re.Match[str]) -> str:
        if not SECRET_KEY.search(m["name"].lstrip("+~")):
            return m[0]
        return f"{m['pre']}{m['name']}={REDACTED}"

    return _NAME_VALUE.sub(pair, text)


def redact_value(key: str, value: Any) -> str:
    """A parameter value fit to log: secrets hidden, the home directory shown as ``~``.

    Values of secret-looking keys (``password``, ``token``, ``secret``, ``api_key``, ...)
    become ``***``; credentials inside URIs and secret query parameters too; the user's
    home directory prefix becomes ``~`` so runs do not record who ran them, or where.
    """
    text = str(value)
    if value is not None and text != "" and SECRET_KEY.search(key):
        return REDACTED
    text = redact_uri(text)
    home = str(Path.home()).rstrip("/")
    if home and home != "/" and home in text:
        text = re.sub(rf"{re.escape(home)}(?=/|$|[\s,;:'\"\]}})])", "~", text)
    return text


def _params(params: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(k, redact_value(k, v)[:MAX_PARAM_LEN]) for k, v in params.items()]


def log_batch(
    run_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    steps: Mapping[str, list[tuple[int, float]]] | None = None,
) -> None:
    """Batched calls of at most 100 params and 1000 metrics (MLflow's limits): single calls
    cost ~10 ms each on SQLite. ``steps`` are metrics with one value per step."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient()
    ts = int(time.time() * 1000)
    points = [(k, v, 0) for k, v in (metrics or {}).items()]
    points += [(k, v, step) for k, series in (steps or {}).items() for step, v in series]
    ms = [
        Metric(k, float(v), ts, int(step))
        for k, v, step in points
        if v is not None and np.isfinite(v)
    ]
    ps = _params(params or {})
    ts_ = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for n in range(max(-(-len(ps) // 100), -(-len(ms) // 1000), 1)):
        client.log_batch(
            run_id,
            metrics=ms[n * 1000 : (n + 1) * 1000],
            params=ps[n * 100 : (n + 1) * 100],
            tags=ts_ if n == 0 else [],
        )


@contextlib.contextmanager
def parent_run(
    experiment_id: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[str]:
    """The ensemble's parent run; marked FAILED with the reason if the body raises.

    Under ``mlflow run`` the run it created (``MLFLOW_RUN_ID``) becomes the parent; in a Hydra
    sweep each job's parent run is a child of the sweep's run instead.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    sweep_run = os.environ.get(SWEEP_RUN_VAR)
    outer = None if sweep_run else os.environ.get("MLFLOW_RUN_ID")
    if sweep_run:
        run_id = client.create_run(
            experiment_of(sweep_run),
            run_name=run_name,
            tags={PARENT_TAG: sweep_run, **owner_tags()},
        ).info.run_id
    elif outer:
        run_id = outer
        client.set_tag(run_id, "mlflow.runName", run_name)
    else:
        run_id = client.create_run(experiment_id, run_name=run_name, tags=owner_tags()).info.run_id
    log_batch(run_id, params=params, tags={**tags, "geoensemble.role": "ensemble"})
    try:
        yield run_id
    except BaseException as exc:
        end_run(run_id, failed=exc)
        raise
    if not outer:
        end_run(run_id)


def experiment_of(run_id: str) -> str:
    """The experiment a run belongs to (``mlflow run`` may have chosen another one)."""
    from mlflow import MlflowClient

    return str(MlflowClient().get_run(run_id).info.experiment_id)


def log_child_run(
    experiment_id: str,
    parent_id: str,
    *,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
) -> str:
    """A finished child run with its params, metrics and tags in one batched call."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=run_name, tags={PARENT_TAG: parent_id, **tags})
    log_batch(run.info.run_id, params=params, metrics=metrics)
    client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)


def log_artifact(
    run_id: str, path: str | os.PathLike[str], artifact_path: str | None = None
) -> None:
    from mlflow import MlflowClient

    MlflowClient().log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: Mapping[str, float]) -> None:
    log_batch(run_id, metrics=metrics)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged pipeline, given so MLflow need not infer them."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"numpy=={np.__version__}"]


def log_model(
    run_id: str,
    pipeline: Any,
    *,
    feature_names: list[str],
    example: np.ndarray,
    model_name: str,
    tags: Mapping[str, str],
) -> str:
    """Log a fitted pipeline into a member run and register it; return the version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    frame = pd.DataFrame(example, columns=feature_names)
    signature = infer_signature(frame, pipeline.predict(example))
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=frame,
            pip_requirements=pip_requirements(),
            skops_trusted_types=skops_trusted_types(pipeline),
        )
    # The digest of the file as stored, so that loading the version can tell a changed file.
    digest = logged_skops_sha256(info.model_uri)
    mv = mlflow.register_model(info.model_uri, model_name, tags={**tags, SKOPS_SHA256_TAG: digest})
    return str(mv.version)


SKOPS_SHA256_TAG = "geoensemble.skops_sha256"
SKOPS_FILE = "model.skops"  # where mlflow.sklearn stores a skops model in its folder


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB pieces."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


def logged_skops_sha256(model_uri: str) -> str:
    """The sha256 of a logged model's ``model.skops``, read back from the store."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return file_sha256(Path(local) / SKOPS_FILE)


def warm_model_logging() -> threading.Thread:
    """Load what logging a model needs, in a background thread; join it before logging.

    The first ``log_model`` of a process imports skops (which imports every scikit-learn
    estimator, ~1.3 s) and has MLflow map installed packages to check the requirements
    (~0.7 s). Started while ensemble members fit, this work no longer delays registering the
    kept members at the end. It is only a warm-up: a failure here surfaces, if at all, in
    ``log_model`` itself.
    """

    def warm() -> None:
        with contextlib.suppress(Exception):
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401
            from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

            warn_dependency_requirement_mismatches(pip_requirements())

    thread = threading.Thread(target=warm, name="geoensemble-warm-mlflow", daemon=True)
    thread.start()
    return thread


def set_alias(model_name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, version)


@dataclass(frozen=True)
class LoadedModel:
    """A model from the registry with what predict needs to check and record."""

    uri: str
    model: Any
    feature_names: list[str]
    name: str | None
    version: str | None
    run_id: str | None


def model_uri(t: TrackingConfig, uri: str | None, alias: str) -> str:
    """``uri`` if given, else ``models:/<tracking.model_name>@<alias>``."""
    return uri or f"models:/{t.model_name}@{alias}"


def load_model(uri: str, *, trusted_types: Sequence[str] = ()) -> LoadedModel:
    """Load a logged scikit-learn model and its signature's feature names.

    Parameters
    ----------
    uri
        ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``runs:/<id>/model``...
    trusted_types
        ``trust.types``: types the model file may hold besides geoensemble's allow-list.

    Raises
    ------
    ModelNotFoundError
        If there is no such model.
    InputFileError
        If its ``model.skops`` differs from the file registered, is damaged, or holds types
        that are not trusted (see :func:`load_sklearn_flavour`).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name = version = run_id = None
    expected: str | None = None
    try:
        if uri.startswith("models:/"):
            ref = uri[len("models:/") :]
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            version, run_id = str(mv.version), mv.run_id
            expected = (mv.tags or {}).get(SKOPS_SHA256_TAG)
        info = mlflow.models.get_model_info(uri)
        model = load_sklearn_flavour(
            uri, info.flavors, trusted_types=trusted_types, expected_sha256=expected
        )
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"cannot load {uri}: {exc.message.splitlines()[0].rstrip('.')}. Run the "
            f"train stage first, or check tracking.model_name and "
            f"predict.alias"
        ) from None
    if info.signature is None:
        raise FeatureMismatchError(
            f"{uri} has no signature naming its input features: "
            f"log it with one (the train stage does)"
        )
    names = list(info.signature.inputs.input_names())
    return LoadedModel(
        uri=uri,
        model=model,
        feature_names=[str(n) for n in names],
        name=name,
        version=version,
        run_id=run_id,
    )


def load_sklearn_flavour(
    uri: str,
    flavors: Mapping[str, Any],
    *,
    trusted_types: Sequence[str] = (),
    expected_sha256: str | None = None,
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
    import tempfile

    import mlflow
    import skops.io

    from geoensemble.errors import ConfigError, InputFileError
    from geoensemble.trust import skops_trusted

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
    allowed = skops_trusted(trusted_types)
    with tempfile.TemporaryDirectory(prefix="geoensemble-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        path = local / SKOPS_FILE
        if not path.is_file():
            raise InputFileError(f"cannot load {uri}: {damaged} (the file is missing)")
        if expected_sha256 and file_sha256(path) != expected_sha256:
            raise InputFileError(
                f"cannot load {uri}: its {SKOPS_FILE} is not the file registered (its sha256 "
                f"differs from the tag {SKOPS_SHA256_TAG}), so it was changed or damaged "
                f"after train logged it: retrain (python pipelines/train.py), or register "
                f"the intended model again"
            )
        try:
            # Reads the file's schema only: nothing is imported or built yet.
            found = skops.io.get_untrusted_types(file=path)
        except Exception as exc:  # zip, JSON and schema errors of a damaged file
            raise InputFileError(
                f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
            ) from None
        untrusted = sorted(set(found) - set(allowed))
        if untrusted:
            raise InputFileError(
                f"cannot load {uri}: its {SKOPS_FILE} holds types geoensemble does not trust "
                f"{untrusted}: retrain, or, only if you trust where this model comes from, "
                f"list them in trust.types (e.g. trust.types=[{untrusted[0]}])"
            )
        try:
            return skops.io.load(path, trusted=allowed)
        except Exception as exc:  # arrays or attributes of a damaged file
            raise InputFileError(
                f"cannot load {uri}: {damaged} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})"
            ) from None


def start_predict_run(
    experiment_id: str, *, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> str:
    from mlflow import MlflowClient

    run = MlflowClient().create_run(
        experiment_id,
        run_name=run_name,
        tags={**tags, **owner_tags(), "geoensemble.role": "predict"},
    )
    log_batch(run.info.run_id, params=params)
    return str(run.info.run_id)


OWNER_HOST, OWNER_PID = "geoensemble.host", "geoensemble.pid"


def owner_tags() -> dict[str, str]:
    """The host and process that own a run they create and end (train, predict)."""
    return {OWNER_HOST: socket.gethostname(), OWNER_PID: str(os.getpid())}


def close_orphaned_runs(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose owning process on this host no longer exists.

    A stage killed outright (SIGKILL, out of memory, power loss) cannot end its run, which
    would stay RUNNING in the MLflow UI for ever. Runs of other hosts, of live processes and
    runs without owner tags (``mlflow run``'s own, sweeps) are left alone.

    Returns
    -------
    list of str
        The ids of the runs closed.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'",
        max_results=1000,
    )
    closed = []
    for run in runs:
        pid = run.data.tags.get(OWNER_PID, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        _terminate(
            run.info.run_id,
            "KILLED",
            f"its process ({pid} on {host}) ended without closing the run: it was killed "
            f"or crashed; found by a later run",
        )
        closed.append(run.info.run_id)
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def end_run(run_id: str, *, failed: BaseException | None = None) -> None:
    """End a run: FINISHED, or FAILED with ``failed`` as its ``failure_reason``."""
    if failed is None:
        _terminate(run_id, "FINISHED")
    else:
        _terminate(run_id, "FAILED", f"{type(failed).__name__}: {failed}")


def _terminate(run_id: str, status: str, reason: str | None = None) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    if reason is not None:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status=status)


# --------------------------------------------------------------------------- predict: models
def find_ensemble_run(spec: str, experiment_id: str) -> str:
    """The parent run of one ensemble: a run id, ``latest``, or a ``key:value`` tag.

    ``latest`` and tags pick the most recent ensemble parent run of the experiment
    (``key=value`` works too, quoted on a Hydra command line).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    sep = "=" if "=" in spec else ":" if ":" in spec else None
    if spec != "latest" and sep is None:
        try:
            return str(client.get_run(spec).info.run_id)
        except MlflowException:
            raise ModelNotFoundError(
                f"predict.ensemble={spec!r}: no such run in the store "
                f"{mlflow_uri()}; give the parent run id from reports/train.json, "
                f"'latest', or a key:value tag of the ensemble run"
            ) from None
    query = "tags.`geoensemble.role` = 'ensemble'"
    if sep is not None:
        key, value = (p.strip() for p in spec.split(sep, 1))
        query += f" and tags.`{key}` = '{value}'"
    runs = client.search_runs(
        [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise ModelNotFoundError(
            f"predict.ensemble={spec!r}: no ensemble run matches in experiment "
            f"{experiment_id}; run the train stage first or check the tag"
        )
    return str(runs[0].info.run_id)


def mlflow_uri() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())


def kept_member_uris(model_name: str, parent_run_id: str) -> list[str]:
    """``models:/<name>/<version>`` of every kept member of one ensemble, best rank first."""
    from mlflow import MlflowClient

    versions = [
        mv
        for mv in MlflowClient().search_model_versions(f"name = '{model_name}'")
        if mv.tags.get("ensemble_run_id") == parent_run_id
    ]
    if not versions:
        raise ModelNotFoundError(
            f"ensemble run {parent_run_id} registered no version of model "
            f"'{model_name}': check tracking.model_name, or that its train run finished"
        )

    def order(mv: Any) -> tuple[int, int]:
        rank = mv.tags.get("rank", "")
        return (int(rank) if rank.isdigit() else 1_000_000, int(mv.version))

    return [f"models:/{model_name}/{mv.version}" for mv in sorted(versions, key=order)]


def model_id_of(name: str, version: str) -> str | None:
    """The MLflow 3 logged-model id behind a registered version (for run-model links)."""
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, version)
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    src = str(mv.source or "")
    return src.split("models:/", 1)[1].split("/", 1)[0] if src.startswith("models:/m-") else None


def link_models(run_id: str, model_ids: list[str]) -> None:
    """Record the logged models a run used as its model inputs (shown in the MLflow UI)."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelInput

    if model_ids:
        MlflowClient().log_inputs(run_id, models=[LoggedModelInput(m) for m in model_ids])


# --------------------------------------------------------------------------- ensembles (issue 5)
def log_image(run_id: str, image: np.ndarray, artifact_file: str) -> None:
    """An RGB(A) uint8 array saved as a PNG artifact of the run (a member's map preview)."""
    from mlflow import MlflowClient

    MlflowClient().log_image(run_id, image, artifact_file=artifact_file)


def log_metric_steps(run_id: str, series: Mapping[str, list[tuple[int, float]]]) -> None:
    """Metrics with one value per step (e.g. the best AIC per generation), batched."""
    log_batch(run_id, steps=series)


def log_dict(run_id: str, obj: Any, artifact_file: str) -> None:
    """A JSON/YAML-serialisable object as an artifact (e.g. the search history)."""
    from mlflow import MlflowClient

    MlflowClient().log_dict(run_id, obj, artifact_file)


def set_version_tags(model_name: str, version: str, tags: Mapping[str, str]) -> None:
    """Tags on a registered model version (e.g. its final rank in the ensemble)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, str(v))


def version_tags(model_name: str, version: str) -> dict[str, str]:
    """The tags of a registered model version (e.g. the class names recorded at training)."""
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(model_name, version).tags or {})


def skops_trusted_types(pipeline: Any) -> list[str]:
    """Types a pipeline we just fitted needs trusted for MLflow's skops format to load it.

    skops refuses types outside its default allow-list on load, and MLflow checks this when
    saving: ``SimpleImputer`` (``numpy.dtype``), geoensemble's own transformers and
    ``SelectKBest``'s score function all need it. The list is written into the model's
    ``MLmodel`` file for MLflow's own check when saving; loading never reads it (trust comes
    from :mod:`geoensemble.trust` and ``trust.types``, see :func:`load_sklearn_flavour`).
    """
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


# --------------------------------------------------------------------------- sweeps
def start_sweep_run(
    experiment_id: str, *, sweep_id: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> tuple[str, bool]:
    """The run every job of a Hydra sweep nests under; return ``(run_id, created)``.

    Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) that run is the sweep run and ``mlflow run``
    ends it, so ``created`` is False.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    outer = os.environ.get("MLFLOW_RUN_ID")
    if outer:
        run_id = outer
        client.set_tag(run_id, "mlflow.runName", f"sweep-{sweep_id}")
    else:
        run_id = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}").info.run_id
    log_batch(
        run_id, params=params, tags={**tags, "sweep_id": sweep_id, "geoensemble.role": "sweep"}
    )
    return str(run_id), not outer


def sweep_ensembles(sweep_run_id: str, sweep_id: str) -> list[dict[str, Any]]:
    """The ensemble runs of a sweep: run id, status, job number, overrides and metrics."""
    from mlflow import MlflowClient

    client = MlflowClient()
    runs = client.search_runs(
        [experiment_of(sweep_run_id)],
        f"tags.sweep_id = '{sweep_id}' and tags.`geoensemble.role` = 'ensemble'",
        max_results=5000,
    )
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "job": int(r.data.tags.get("sweep_job", -1)),
            "overrides": r.data.tags.get("sweep_overrides", ""),
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]


def finish_sweep_run(
    run_id: str,
    *,
    created: bool,
    failed: bool,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    summary: str | os.PathLike[str] | None = None,
) -> None:
    """Record the sweep's outcome on its run and end it (if this process created it)."""
    from mlflow import MlflowClient

    log_batch(run_id, metrics=metrics, tags=tags)
    if summary is not None:
        log_artifact(run_id, summary)
    if created:
        MlflowClient().set_terminated(run_id, status="FAILED" if failed else "FINISHED")
