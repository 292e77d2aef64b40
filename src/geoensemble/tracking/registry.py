"""The model registry of a :class:`~geoensemble.tracking.Tracker`'s store: logging, loading,
versions, tags and aliases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoensemble.errors import FeatureMismatchError, InputFileError, ModelNotFoundError
from geoensemble.redact import redact_uri
from geoensemble.tracking.base import TrackerBase
from geoensemble.tracking.models import (
    MODEL_DIGEST_TAG,
    MODEL_ID_TAG,
    REGISTERED_BY_TAG,
    SKOPS_SHA256_TAG,
    LoadedModel,
    VersionInfo,
    _version_info,
    log_sklearn_model,
    model_digest,
    model_id_from,
    read_model,
)
from geoensemble.tracking.store import guarded


class Registry(TrackerBase):
    """Registry methods of :class:`~geoensemble.tracking.Tracker`."""

    def log_model(
        self,
        run_id: str,
        pipeline: Any,
        *,
        feature_names: list[str],
        example: np.ndarray,
        model_name: str,
        tags: Mapping[str, str],
        description: str | None = None,
        experiment_id: str | None = None,
    ) -> str:
        """Log a fitted pipeline as the model of run ``run_id`` and register it; return the
        version (an existing one when a version of ``model_name`` holds the same content).
        See :meth:`log_member_model`."""
        logged = self.log_member_model(
            run_id,
            pipeline,
            feature_names=feature_names,
            example=example,
            model_name=model_name,
            tags=tags,
            description=description,
            experiment_id=experiment_id,
        )
        assert logged.version is not None  # registered: register=True
        return logged.version

    @guarded
    def log_member_model(
        self,
        run_id: str,
        pipeline: Any,
        *,
        feature_names: list[str],
        example: np.ndarray,
        model_name: str,
        tags: Mapping[str, str],
        description: str | None = None,
        experiment_id: str | None = None,
        register: bool = True,
        model_description: str | None = None,
    ) -> Logged:
        """Log a fitted pipeline as the model of run ``run_id`` and, with ``register``,
        register it as a version of ``model_name``.

        The run is not reopened (it stays as it is, e.g. FINISHED). The logged model is
        tagged with the sha256 of its file and the digest of its content
        (:data:`~.models.MODEL_DIGEST_TAG`). A version is created in one call with
        ``tags``, those two and ``description`` -- unless a version of ``model_name``
        already holds the same content: that one is returned, not registered again.
        ``model_description`` describes a registered model created here (or one without a
        description). ``experiment_id`` is the run's (looked up when not given): the logged
        model goes there. See :func:`~geoensemble.tracking.models.log_sklearn_model`.
        """
        client = self.client
        model_id, location, sha256 = log_sklearn_model(
            client,
            self.uri,
            experiment_id=experiment_id or self.experiment_of(run_id),
            run_id=run_id,
            pipeline=pipeline,
            feature_names=feature_names,
            example=example,
        )
        content = model_digest(pipeline)
        # The version's tags on the logged model too: an unregistered member keeps them.
        client.set_logged_model_tags(
            model_id, {**tags, SKOPS_SHA256_TAG: sha256, MODEL_DIGEST_TAG: content}
        )
        if not register:
            return Logged(model_id, None, False)
        self._ensure_model(model_name, model_description)
        same = self.versions_with_digest(model_name, content)
        if same:
            return Logged(model_id, same[0], False)
        # The source is where the logged model's files are: a models:/<model id> source
        # would make a SQLite registry look the model up with MLflow's process-wide URI, not
        # this client's. The logged model is named by a tag (model_id_from reads it).
        mv = client.create_model_version(
            model_name,
            location,
            run_id=run_id,
            tags={
                **tags,
                SKOPS_SHA256_TAG: sha256,
                MODEL_ID_TAG: model_id,
                MODEL_DIGEST_TAG: content,
                REGISTERED_BY_TAG: "geoensemble",
            },
            description=description,
            model_id=model_id,
        )
        return Logged(model_id, str(mv.version), True)

    def _ensure_model(self, name: str, description: str | None) -> None:
        """Create registered model ``name`` if needed, with ``description`` (also given to
        an existing one that has none)."""
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            found = client.get_registered_model(name)  # a read: most trainings find it
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                client.create_registered_model(name, description=description)
                return
            except MlflowException as again:  # another stage created it meanwhile
                if again.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            found = client.get_registered_model(name)
        if description and not found.description:
            client.update_registered_model(name, description=description)

    @guarded
    def our_versions(self) -> list[VersionInfo]:
        """Every version geoensemble registered (tag :data:`~.models.REGISTERED_BY_TAG`), in
        every registered model of the store, with the aliases that hold it; by model name,
        then version."""
        found = self.client.search_model_versions(
            f"tags.`{REGISTERED_BY_TAG}` = 'geoensemble'", max_results=10_000
        )
        held: dict[str, dict[str, list[str]]] = {}
        for name in sorted({str(mv.name) for mv in found}):
            aliases = self.client.get_registered_model(name).aliases or {}
            by_version: dict[str, list[str]] = {}
            for alias, version in aliases.items():
                by_version.setdefault(str(version), []).append(str(alias))
            held[name] = by_version
        return sorted(
            (
                VersionInfo(
                    name=str(mv.name),
                    version=str(mv.version),
                    tags=dict(mv.tags or {}),
                    aliases=sorted(held[str(mv.name)].get(str(mv.version), [])),
                    run_id=mv.run_id,
                )
                for mv in found
            ),
            key=lambda v: (v.name, int(v.version)),
        )

    @guarded
    def delete_version(self, name: str, version: str) -> None:
        """Delete one registered version (its logged model and run stay)."""
        self.client.delete_model_version(name, str(version))

    @guarded
    def versions_with_digest(self, name: str, digest: str) -> list[str]:
        """The versions of model ``name`` whose content digest is ``digest``, oldest first."""
        found = self.client.search_model_versions(
            f"name = '{_quoted(name)}' and tags.`{MODEL_DIGEST_TAG}` = '{_quoted(digest)}'"
        )
        return sorted((str(mv.version) for mv in found), key=int)

    def load_model(self, uri: str, *, trusted_types: Sequence[str] = ()) -> LoadedModel:
        """Load a logged scikit-learn model and its signature's feature names.

        Parameters
        ----------
        uri
            ``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``runs:/<id>/model``...
        trusted_types
            Types the model file may hold besides geoensemble's allow-list.

        Raises
        ------
        ModelNotFoundError
            If there is no such model.
        InputFileError
            If its ``model.skops`` differs from the file registered, is damaged, or holds
            types that are not trusted (see
            :func:`~geoensemble.tracking.models.load_sklearn_flavour`).
        """
        return self._load_mlflow(uri, trusted_types)

    @guarded
    def _load_mlflow(self, uri: str, trusted_types: Sequence[str]) -> LoadedModel:
        from mlflow.exceptions import MlflowException

        client = self.client
        found: _Version | None = None
        expected: str | None = None
        try:
            if _is_logged_model(uri):  # models:/<model id>: logged, maybe not registered
                logged = client.get_logged_model(uri[len("models:/") :])
                tags = {str(k): str(v) for k, v in (logged.tags or {}).items()}
                found = _Version("", "", logged.source_run_id, str(logged.model_id), tags)
                expected = tags.get(SKOPS_SHA256_TAG)
            elif uri.startswith("models:/"):
                found = _registered_version(client, uri)
                expected = found.tags.get(SKOPS_SHA256_TAG)
            model, info = read_model(
                client, uri, self.uri, trusted_types=trusted_types, expected_sha256=expected
            )
        except MlflowException as exc:
            if (fault := self.fault(exc)) is not None:
                raise fault from None
            raise _not_loaded(uri, exc, found) from None
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
            name=(found.name or None) if found else None,
            version=(found.version or None) if found else None,
            run_id=found.run_id if found else None,
            model_id=found.model_id if found else None,
            tags=found.tags if found else None,
        )

    @guarded
    def model_version(self, name: str, version: str) -> VersionInfo:
        """One registered version.

        Raises
        ------
        ModelNotFoundError
            If the model or the version does not exist.
        """
        from mlflow.exceptions import MlflowException

        try:
            return _version_info(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if (fault := self.fault(exc)) is not None:
                raise fault from None
            raise ModelNotFoundError(
                f"model '{name}' has no version {version} in the store {redact_uri(self.uri)}: "
                f"list its versions in the MLflow UI (Models > {name}), or check name and uri",
                arguments={"name": "model_version.name", "uri": "Tracker.uri"},
            ) from None

    @guarded
    def alias_version(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at (``None`` if the alias or the model does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if (fault := self.fault(exc)) is not None:
                raise fault from None
            return None

    @guarded
    def model_versions(self, name: str) -> list[VersionInfo]:
        """Every registered version of model ``name`` (oldest first)."""
        found = self.client.search_model_versions(f"name = '{name}'", max_results=10_000)
        return sorted((_version_info(mv) for mv in found), key=lambda v: int(v.version))

    @guarded
    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(model_name, alias, version)

    @guarded
    def set_version_tags(self, model_name: str, version: str, tags: Mapping[str, str]) -> None:
        """Tags on a registered model version (e.g. its final rank in the ensemble)."""
        for k, v in tags.items():
            self.client.set_model_version_tag(model_name, version, k, str(v))

    @guarded
    def version_tags(self, model_name: str, version: str) -> dict[str, str]:
        """The tags of a registered model version (e.g. the class names recorded at training)."""
        return dict(self.client.get_model_version(model_name, version).tags or {})

    @guarded
    def model_id_of(self, name: str, version: str) -> str | None:
        """The MLflow 3 logged-model id behind a registered version (for run-model links)."""
        return model_id_from(self.client.get_model_version(name, version))

    @guarded
    def kept_member_uris(self, model_name: str, parent_run_id: str) -> list[str]:
        """Every kept member of one ensemble, best rank first: ``models:/<name>/<version>``
        of its registered versions, or, when it registered none (an experiment, a sweep or
        a hand run register only on request), ``models:/<model id>`` of the models it
        logged."""
        versions = [
            mv
            for mv in self.client.search_model_versions(f"name = '{model_name}'")
            if mv.tags.get("ensemble_run_id") == parent_run_id
        ]
        if versions:
            ordered = sorted(versions, key=lambda mv: (_rank(mv.tags), int(mv.version)))
            return [f"models:/{model_name}/{mv.version}" for mv in ordered]
        logged = self.client.search_logged_models(
            [self.experiment_of(parent_run_id)],
            filter_string=f"tags.ensemble_run_id = '{parent_run_id}'",
        )
        if logged:
            ordered = sorted(logged, key=lambda m: (_rank(m.tags), m.creation_timestamp))
            return [f"models:/{m.model_id}" for m in ordered]
        raise ModelNotFoundError(
            f"ensemble run {parent_run_id} logged no model and registered no version of "
            f"model '{model_name}': check model_name, or that its train run finished",
            arguments={"model_name": "kept_member_uris.model_name"},
        )

    @guarded
    def find_ensemble_run(self, spec: str, experiment_id: str) -> str:
        """The parent run of one ensemble: a run id, ``latest``, or a ``key:value`` tag.

        ``latest`` and tags pick the most recent ensemble parent run of the experiment
        (``key=value`` works too, quoted on a Hydra command line).
        """
        from mlflow.exceptions import MlflowException

        sep = "=" if "=" in spec else ":" if ":" in spec else None
        if spec != "latest" and sep is None:
            try:
                return str(self.client.get_run(spec).info.run_id)
            except MlflowException as exc:
                if (fault := self.fault(exc)) is not None:
                    raise fault from None
                raise ModelNotFoundError(
                    f"spec={spec!r}: no such run in the store "
                    f"{redact_uri(self.uri)}; give the parent run id from reports/train.json, "
                    f"'latest', or a key:value tag of the ensemble run",
                    arguments={"spec": "find_ensemble_run.spec"},
                ) from None
        query = "tags.`geoensemble.role` = 'ensemble'"
        if sep is not None:
            key, value = (p.strip() for p in spec.split(sep, 1))
            query += f" and tags.`{key}` = '{value}'"
        runs = self.client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
        )
        if not runs:
            raise ModelNotFoundError(
                f"spec={spec!r}: no ensemble run matches in experiment "
                f"{experiment_id}; run the train stage first or check the tag",
                arguments={"spec": "find_ensemble_run.spec"},
            )
        return str(runs[0].info.run_id)


@dataclass(frozen=True)
class Logged:
    """A member's model as logged: its MLflow 3 logged-model id, and its registered version
    (``None`` when not registered); ``new`` when this call registered it."""

    model_id: str
    version: str | None
    new: bool


def _quoted(text: str) -> str:
    """``text`` for a single-quoted string of an MLflow search filter."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


@dataclass(frozen=True)
class _Version:
    """A registered version a ``models:/`` URI names."""

    name: str
    version: str
    run_id: str | None
    model_id: str | None
    tags: dict[str, str]


def _is_logged_model(uri: str) -> bool:
    """Whether ``uri`` names an MLflow 3 logged model, ``models:/<model id>``."""
    ref = uri[len("models:/") :] if uri.startswith("models:/") else ""
    return bool(ref) and "/" not in ref and "@" not in ref


def _registered_version(client: Any, uri: str) -> _Version:
    """The version ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` names."""
    ref = uri[len("models:/") :]
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
    return _Version(name, str(mv.version), mv.run_id, model_id_from(mv), dict(mv.tags or {}))


def _not_loaded(uri: str, exc: Any, found: _Version | None) -> Exception:
    """The one-line error for a model MLflow could not load (``exc``)."""
    if found is not None:  # the registry knows the version: its files are gone
        return InputFileError(
            f"cannot load {uri}: version {found.version} of '{found.name}' is registered, but "
            f"its files cannot be read ({exc.message.splitlines()[0].rstrip('.:')}): the "
            f"artifact store was moved or deleted; restore it (artifact_root, beside the "
            f"SQLite store by default) or retrain (dvc repro --force train)",
            arguments={"artifact_root": "Tracker.artifact_root"},
        )
    # only the workspace pipeline and `geoensemble promote` set the champion alias
    how = (
        " (dvc repro on the committed params.yaml), promote a registered version "
        "(geoensemble promote version=N)"
        if "@" in uri
        else ""
    )
    return ModelNotFoundError(
        f"cannot load {uri}: {exc.message.splitlines()[0].rstrip('.')}. Run the "
        f"train stage first{how}, or check the model name and the alias (or version) in the URI"
    )


def _rank(tags: Mapping[str, str] | None) -> int:
    """A kept member's rank from its tags (unranked last)."""
    rank = (tags or {}).get("rank", "")
    return int(rank) if rank.isdigit() else 1_000_000
