"""``predict_many`` and ``write_map``: the predict stage's blockwise prediction and COG writer."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoensemble.errors import ConfigError, FeatureMismatchError

if TYPE_CHECKING:
    import xarray as xr

    from geoensemble.predict.combine import BlockPredictor
    from geoensemble.predict.models import LoadedMember

OUTPUTS = ("members", "vote", "agreement", "probabilities", "max_probability", "mean")


def _is_ensemble(item: Any) -> bool:
    """An :class:`~geoensemble.api.fit.Ensemble` (recognised by what it holds, so that this
    module does not import the one that calls it)."""
    return hasattr(item, "kept") and hasattr(item, "feature_names") and hasattr(item, "metric")


def _members(models: Any) -> list[LoadedMember]:
    """Every model to predict with, as the predict stage's members (best first)."""
    from geoensemble.predict.models import LoadedMember, model_kind

    items = list(models) if isinstance(models, list | tuple) else [models]
    if not items:
        raise ConfigError("models is empty: pass an Ensemble, a fitted estimator, or a list")
    out: list[LoadedMember] = []
    for i, item in enumerate(items):
        if _is_ensemble(item):
            names = list(item.feature_names)
            out += [
                LoadedMember(k.name.replace("-", "_"), k.pipeline, names, k.name) for k in item.kept
            ]
        elif hasattr(item, "predict"):
            fitted = getattr(item, "feature_names_in_", None)
            names = [str(n) for n in fitted] if fitted is not None else []
            label = f"model_{i}"
            out.append(LoadedMember(label, item, names, f"python:{type(item).__name__}"))
        else:
            raise ConfigError(
                f"models[{i}] is a {type(item).__name__}: pass an Ensemble from "
                f"fit_ensemble(), or a fitted estimator with .predict()"
            )
    labels = [m.label for m in out]
    for i, m in enumerate(out):
        if labels.count(m.label) > 1:
            m.label = f"{m.label}_{i}"
    kinds = {model_kind(m.model) for m in out}
    if len(kinds) > 1:
        raise ConfigError(
            f"the models mix kinds {sorted(kinds)}: predict classifiers, clusterers and "
            f"regressors in separate calls"
        )
    return out


def _keys(members: list[LoadedMember], outputs: Sequence[str]) -> list[str]:
    """The predictor's output keys for ``outputs`` (the predict stage's names)."""
    from geoensemble.predict.combine import CLASSIFIER, REGRESSOR

    if isinstance(outputs, str):
        outputs = (outputs,)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise ConfigError(f"outputs={tuple(outputs)!r}: choose among {OUTPUTS}")
    kind = members[0].kind
    if kind == REGRESSOR and {"vote", "agreement", "probabilities", "max_probability"} & set(
        outputs
    ):
        outputs = [o for o in outputs if o in ("members", "mean")] or ["mean"]
    if {"probabilities", "max_probability"} & set(outputs) and not (
        kind == CLASSIFIER and all(hasattr(m.model, "predict_proba") for m in members)
    ):
        raise ConfigError(
            "outputs 'probabilities' and 'max_probability' need classifiers with "
            "predict_proba: drop them for clusterers"
        )
    # every member's map is computed anyway (the vote needs it); kept when asked for
    keys = [f"member:{i}" for i in range(len(members))]
    for o in ("vote", "agreement", "probabilities", "max_probability", "mean"):
        if o in outputs:
            keys.append(o)
    if "agreement" in keys and "vote" not in keys:
        keys.insert(len(members), "vote")
    return keys


def _names_in(ds: xr.Dataset, members: list[LoadedMember], where: str) -> list[str]:
    """The union of the members' inputs in reading order, checked against the scene."""
    from geoensemble.predict.models import check_features

    if not hasattr(ds, "data_vars"):
        raise ConfigError(f"{where} is a {type(ds).__name__}: pass an xarray.Dataset of features")
    scene = [str(v) for v in ds.data_vars]
    union: list[str] = []
    for m in members:
        if not m.feature_names:  # fitted on arrays: every feature of the scene, in order
            n_in = getattr(m.model, "n_features_in_", len(scene))
            if n_in != len(scene):
                raise FeatureMismatchError(
                    f"{where} has {len(scene)} features {scene} but {m.uri} was fitted on "
                    f"{n_in} unnamed ones: fit it on a DataFrame with the feature names, or "
                    f"pass the scene's matching features"
                )
            m.feature_names = list(scene)
        for n in check_features(m.feature_names, scene, where=where):
            if n not in union:
                union.append(n)
    return union


def _assemble(
    ds: xr.Dataset, predictor: BlockPredictor, client: Any, *, threads: int
) -> dict[str, np.ndarray]:
    """Every output of one scene, predicted block by block into whole arrays."""
    from geoensemble.io.profiles import BLOCK_SIZE
    from geoensemble.predict.blocks import (
        blocks,
        feature_array,
        predicted_blocks,
        scene_block_edge,
    )

    height, width = int(ds.sizes["y"]), int(ds.sizes["x"])
    arr = feature_array(ds, predictor.features)
    todo = blocks(height, width, scene_block_edge(arr, BLOCK_SIZE))
    full: dict[str, np.ndarray] = {}
    for key in predictor.outputs:
        dtype, nodata, bands = predictor.layout(key)
        shape = (bands, height, width) if bands > 1 else (height, width)
        full[key] = np.full(shape, nodata, dtype=dtype)
    with predicted_blocks(predictor, arr, todo, threads=threads, client=client) as results:
        for b, res in results:
            rows, cols = b.slices
            for key, a in res.arrays.items():
                full[key][..., rows, cols] = a
    return full


def _scene_dataset(
    ds: xr.Dataset,
    full: dict[str, np.ndarray],
    predictor: BlockPredictor,
    outputs: Sequence[str],
) -> xr.Dataset:
    """The outputs as a Dataset on the scene's grid, with nodata, class names and CRS."""
    import xarray as xr

    from geoensemble.io.stack import grid_attrs, set_grid
    from geoensemble.predict.combine import REGRESSOR
    from geoensemble.predict.scene import DESCRIPTION

    scheme = predictor.scheme
    coords = {"y": ds["y"].values, "x": ds["x"].values}
    names = {int(c): n for c, n in zip(scheme.codes, scheme.names, strict=True)}
    # the stage's colours, so write_map draws each class as the predict stage does
    colours = {int(c): list(rgb) for c, rgb in zip(scheme.codes, scheme.colours, strict=False)}
    out: dict[str, xr.DataArray] = {}
    for key, values in full.items():
        if key.startswith("member:") and "members" not in outputs:
            continue
        _, nodata, bands = predictor.layout(key)
        attrs: dict[str, Any] = {"nodata": nodata, "geoensemble_output": key.split(":")[0]}
        if key.startswith("member:"):
            m = predictor.members[int(key[7:])]
            name, attrs["model"] = m.label, m.uri
            attrs["description"] = f"{scheme.kind} map of {m.uri}"
        else:
            name, attrs["description"] = key, DESCRIPTION[key]
        if scheme.kind != REGRESSOR and (key == "vote" or key.startswith("member:")):
            attrs["class_names"] = json.dumps(names)
            attrs["class_colours"] = json.dumps(colours)
        if key in ("agreement", "max_probability", "probabilities"):
            attrs["units"] = "percent"
        if bands > 1:
            da = xr.DataArray(values, dims=("class", "y", "x"), coords=coords, attrs=attrs)
            da = da.assign_coords({"class": list(scheme.names)})
        else:
            da = xr.DataArray(values, dims=("y", "x"), coords=coords, attrs=attrs)
        out[name] = da.rio.write_nodata(nodata, encoded=False)
    result = xr.Dataset(out)
    result.attrs.update(
        class_names=json.dumps(names),
        kind=scheme.kind,
        models=json.dumps([m.uri for m in predictor.members]),
    )
    crs, transform = grid_attrs(ds) if "geotransform" in ds.attrs else (None, None)
    if transform is None:
        return result
    return set_grid(result, crs, transform)


def predict_many(
    models: Any,
    scenes: xr.Dataset | Sequence[xr.Dataset],
    *,
    outputs: Sequence[str] = ("members", "vote", "agreement"),
    client: Any = None,
) -> list[xr.Dataset]:
    """Every model on every scene, blockwise: the predict stage's maps, in memory.

    Parameters
    ----------
    models
        An :class:`Ensemble` (its kept members, best first), a fitted estimator or
        pipeline, or a list of them. Ensemble members take their features by name; other
        models by ``feature_names_in_``, else every feature of the scene in order.
    scenes
        Feature datasets (:func:`featurize`) built like the training features.
    outputs
        ``members`` (one map per model, named after it), ``vote`` (majority vote, ties to
        the better member), ``agreement`` (percent of members voting for the winner);
        classifiers also ``probabilities`` and ``max_probability``; regressors ``mean``.
    client
        A ``dask.distributed.Client`` to predict the blocks on; ``None``: threads here.

    Returns
    -------
    list of xarray.Dataset
        One per scene, on its grid (coordinates, ``rio.crs`` and transform kept): class
        maps as integer codes (uint8, no-data 255, where a pixel has a NaN feature),
        percent layers as uint8 (no-data 255), regression maps as float32 (NaN). Each
        variable's ``attrs`` hold ``nodata`` (also ``_FillValue``) and, for class maps,
        ``class_names`` (JSON ``{code: name}``); the dataset's ``attrs`` repeat them.

    Raises
    ------
    FeatureMismatchError
        When a scene lacks a feature a model was trained on (missing and extra listed).
    ConfigError
        For an unknown output or a model that cannot predict.
    """
    import xarray as xr

    from geoensemble.predict.combine import CLUSTER, BlockPredictor, ClassScheme
    from geoensemble.predict.legend import aligned_scheme
    from geoensemble.predict.models import env_threads

    members = _members(models)
    keys = _keys(members, outputs)
    many: list[xr.Dataset] = [scenes] if isinstance(scenes, xr.Dataset) else list(scenes)
    scheme = ClassScheme.of(members)
    if many and members[0].kind == CLUSTER:
        # cluster codes matched to the first (best) member's on the first scene, as the stage
        scheme = aligned_scheme(members, many[0], _names_in(many[0], members, "scenes[0]"))
    results = []
    for i, ds in enumerate(many):
        where = f"scenes[{i}]"
        union = _names_in(ds, members, where)
        predictor = BlockPredictor(members, union, scheme, keys)
        full = _assemble(ds, predictor, client, threads=env_threads())
        results.append(_scene_dataset(ds, full, predictor, outputs))
    return results


def write_map(
    da: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    colors: Sequence[Any] | Mapping[int, Any] | None = None,
    compress: str = "lzw",
) -> Path:
    """Write a map as a Cloud-Optimized GeoTiff with the predict stage's writer.

    Written under a temporary name and moved into place (a file there is replaced only if
    geoensemble wrote it). Class maps get a colour table, class names (GeoTiff tags, a GDAL
    ``.aux.xml`` and a QGIS ``.qml``) and nearest-neighbour overviews.

    Parameters
    ----------
    da
        A map from :func:`predict_many` (or any ``(y, x)`` / ``(band, y, x)`` array with a
        CRS and transform, ``rio.crs``/``rio.transform()``).
    path
        The GeoTiff to write.
    class_names
        Class names by code (a list: code = position); default ``da.attrs["class_names"]``.
    colors
        Colours by code: ``(r, g, b)`` 0-255 or matplotlib colour names; default the
        predict stage's (``da.attrs["class_colours"]`` of a map from :func:`predict_many`),
        else each class name's own colour, as the stage picks it (water blue, forest green).
    compress
        ``lzw``, ``deflate``, ``zstd`` or ``none``.

    Returns
    -------
    pathlib.Path
        The map written.

    Raises
    ------
    OutputError
        When the file cannot be written, or a file there was not written by geoensemble.
    ConfigError
        For an unknown compression, mismatched names/colours, or a map without a grid.
    """
    from geoensemble.predict.blocks import Block
    from geoensemble.predict.writer import GDAL_ENV, MapWriter

    if compress.lower() not in {"lzw", "deflate", "zstd", "none"}:
        raise ConfigError(f"compress={compress!r} is unknown: use lzw, deflate, zstd or none")
    if not hasattr(da, "dims") or da.ndim not in (2, 3):
        raise ConfigError("da must be a (y, x) or (band, y, x) xarray.DataArray")
    values = np.asarray(da.values)
    crs = da.rio.crs
    try:
        transform = da.rio.transform()  # the recorded one: exact, not from coordinates
    except Exception:  # rioxarray raises several kinds for a missing or broken grid
        transform = None
    if transform is None or transform.is_identity:
        raise ConfigError(
            "da has no grid: give it one with da.rio.write_crs(...) and coordinates x/y "
            "(maps from predict_many keep their scene's grid)"
        )
    nodata = da.attrs.get("nodata", da.rio.nodata)
    classes = _classes(da, values, class_names, colors, nodata)
    output = str(da.attrs.get("geoensemble_output", ""))
    percent = output in ("agreement", "max_probability", "probabilities")
    bands = 1 if values.ndim == 2 else values.shape[0]
    band_names = [output] if percent and bands == 1 else None
    if values.ndim == 3 and "class" in da.coords:
        band_names = [str(c) for c in da["class"].values]
    import rasterio

    target = Path(os.fspath(path))
    with rasterio.Env(**GDAL_ENV):
        writer = MapWriter(
            target,
            width=values.shape[-1],
            height=values.shape[-2],
            count=bands,
            dtype=str(values.dtype),
            nodata=nodata,
            crs=crs,
            transform=transform,
            compress=compress,
            tags={
                "geoensemble_output": output or "map",
                "description": da.attrs.get("description", str(da.name or "map")),
            },
            classes=classes,
            band_names=band_names,
            scales=[0.01] * bands if percent else None,
        )
        try:
            writer.write(Block(0, 0, values.shape[-2], values.shape[-1]), values)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise


def _rgb(colour: Any, code: int) -> tuple[int, int, int]:
    if isinstance(colour, str):
        from matplotlib.colors import to_rgb

        try:
            r, g, b = (round(255 * c) for c in to_rgb(colour))
        except ValueError:
            raise ConfigError(f"colors[{code}]={colour!r} is not a colour name") from None
        return r, g, b
    rgb = tuple(int(c) for c in colour)
    if len(rgb) < 3 or any(not 0 <= c <= 255 for c in rgb[:3]):
        raise ConfigError(f"colors[{code}]={colour!r}: use (r, g, b) with values 0-255")
    return rgb[0], rgb[1], rgb[2]


def _classes(
    da: xr.DataArray,
    values: np.ndarray,
    class_names: Sequence[str] | Mapping[int, str] | None,
    colors: Sequence[Any] | Mapping[int, Any] | None,
    nodata: Any,
) -> dict[int, tuple[str, tuple[int, int, int]]] | None:
    """``{code: (name, rgb)}`` for a class map (integer codes with names), else ``None``."""
    from geoensemble.classes import class_colours

    if colors is None and class_names is None and "class_colours" in da.attrs:
        colors = {int(k): v for k, v in json.loads(da.attrs["class_colours"]).items()}
    if class_names is None and "class_names" in da.attrs:
        class_names = {int(k): v for k, v in json.loads(da.attrs["class_names"]).items()}
    if class_names is None or values.dtype.kind not in "iu":
        if class_names is not None:
            raise ConfigError(f"class_names need a map of integer class codes, not {values.dtype}")
        return None
    names = dict(enumerate(class_names)) if not isinstance(class_names, Mapping) else class_names
    names = {int(k): str(v) for k, v in names.items()}
    if nodata is not None and int(nodata) in names:
        raise ConfigError(f"class_names names code {int(nodata)}, the map's no-data value")
    present = np.unique(values)
    if nodata is not None:
        present = present[present != int(nodata)]
    unnamed = [int(c) for c in present if int(c) not in names]
    if unnamed:
        # A map whose legend leaves classes out would show them black and unnamed in a GIS.
        raise ConfigError(
            f"class_names lacks class code(s) {unnamed[:10]}"
            + (f" (and {len(unnamed) - 10} more)" if len(unnamed) > 10 else "")
            + f" of the map's {len(present)} classes: name every class, e.g. a list of "
            f"{int(present.max()) + 1} names or a {{code: name}} mapping"
        )
    codes = sorted(names)
    if colors is None:  # by name, as the stage colours a class
        rgb = dict(zip(codes, class_colours([names[c] for c in codes]), strict=True))
    else:
        by_code = dict(enumerate(colors)) if not isinstance(colors, Mapping) else colors
        missing = [c for c in codes if c not in by_code]
        if missing:
            raise ConfigError(f"colors lacks class code(s) {missing}: give one colour per class")
        rgb = {c: _rgb(by_code[c], c) for c in codes}
    return {c: (names[c], rgb[c]) for c in codes}
