"""Predicting one block with every member, and combining the members.

The class codes of all members share one :class:`ClassScheme` so that their maps, the vote
and the probabilities speak the same language: clusterers output ``0..k-1``, and with several
members each member's clusters are first matched to the first member's
(:func:`align_clusters`), so that a code means the same cluster in every map; classifiers
with non-negative integer labels keep them as codes (so a map says ``3`` where the training
labels said ``3``); other labels (strings) are coded by their sorted position.

All work here is vectorised over the valid pixels of a block: no per-pixel Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geoensemble.features.table import from_table, to_table, valid_mask
from geoensemble.io.profiles import class_dtype
from geoensemble.predict.models import CLASSIFIER, CLUSTER, REGRESSOR, LoadedMember, final_step

# Percent layers (agreement, probabilities) are uint8 0..100 with this nodata.
PCT_NODATA = 255


@dataclass
class ClassScheme:
    """The shared class codes of the members' outputs, with their names and colours.

    ``recode[i]`` (clusterers with several members) maps member ``i``'s cluster codes to the
    shared codes: its clusters matched to the reference member's (:func:`align_clusters`).
    ``colours`` are per code, in the order of ``codes``; by default each class name's own
    colour (:func:`geoensemble.classes.class_colours`), or the cluster palette for clusters
    nothing has named.
    """

    kind: str
    labels: np.ndarray  # sorted distinct labels the members can output
    codes: np.ndarray  # the map code of each label
    names: list[str]
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    recode: list[np.ndarray] = field(default_factory=list)
    source: str = ""  # where the names come from (tagged on the maps)
    # names of the codes in one map (``vote``, ``member:1``) by that map's own shares, where
    # they differ from ``names`` (the champion's)
    names_by_map: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.colours and self.kind != REGRESSOR:
            from geoensemble.classes import class_colours, palette

            named = self.kind == CLASSIFIER
            self.colours = class_colours(self.names) if named else palette(len(self.names))

    @property
    def n_codes(self) -> int:
        return int(self.codes.max()) + 1 if self.codes.size else 0

    @property
    def dtype(self) -> str:
        return class_dtype(self.n_codes)[0]

    @property
    def nodata(self) -> int:
        return class_dtype(self.n_codes)[1]

    @classmethod
    def of(
        cls,
        members: list[LoadedMember],
        names: list[str] | dict[Any, str] | None = None,
        *,
        recode: list[np.ndarray] | None = None,
        source: str = "",
    ) -> ClassScheme:
        """The union of the members' classes (or ``0..k-1`` for clusterers).

        Parameters
        ----------
        names
            A name per code, or per label (class value) for classifiers: labels it does not
            name keep their default name (``class <v>``, a string label itself, ``cluster i``).
        recode
            Per member, its cluster code -> shared code (:func:`align_clusters`).
        """
        from geoensemble.predict.models import n_classes_of

        kind = members[0].kind
        if kind == REGRESSOR:
            return cls(REGRESSOR, np.empty(0), np.empty(0, np.int64), [])
        if kind == CLUSTER:
            if recode:
                k = max(int(r.max()) + 1 for r in recode if r.size)
            else:
                k = max(n_classes_of(m.model) for m in members)
            labels = np.arange(k)
            default = [f"cluster {i}" for i in range(k)]
            return cls(
                CLUSTER,
                labels,
                labels.astype(np.int64),
                _named(default, labels, names),
                recode=list(recode or []),
                source=source,
            )
        labels = np.unique(np.concatenate([final_step(m.model).classes_ for m in members]))
        if labels.dtype.kind in "iu" and labels.min() >= 0:
            codes = labels.astype(np.int64)
            default = [f"class {v}" for v in labels]
        else:
            codes = np.arange(labels.size, dtype=np.int64)
            default = [str(v) for v in labels]
        return cls(CLASSIFIER, labels, codes, _named(default, labels, names), source=source)

    def positions(self, pred: np.ndarray, member: int | None = None) -> np.ndarray:
        """Index into ``labels`` of each predicted label (of ``member``, for its recoding)."""
        if self.kind == CLUSTER:
            pos = np.asarray(pred, dtype=np.int64)
            if member is not None and self.recode:
                return self.recode[member][pos]
            return pos
        return np.searchsorted(self.labels, pred).astype(np.int64)

    def colour_table(self) -> dict[int, tuple[int, int, int]]:
        return {int(c): tuple(col) for c, col in zip(self.codes, self.colours, strict=True)}  # type: ignore[misc]

    def names_of(self, key: str | None = None) -> list[str]:
        """The names of the codes in the map of output ``key`` (its own, else the shared)."""
        return self.names_by_map.get(key, self.names) if key else self.names

    def legend(self, key: str | None = None) -> dict[int, tuple[str, tuple[int, int, int]]]:
        """``{code: (name, rgb)}``: what the writer puts in tags, colour table and sidecars
        of the map of output ``key``."""
        colours = self.colour_table()
        names = self.names_of(key)
        return {int(c): (n, colours[int(c)]) for c, n in zip(self.codes, names, strict=True)}


def _named(default: list[str], labels: np.ndarray, names: Any) -> list[str]:
    """``default`` with the names given per position (a list) or per label (a mapping)."""
    if names is None:
        return default
    if isinstance(names, list):
        return [str(n) for n in names]
    by_label = {str(k): str(v) for k, v in names.items()}
    return [by_label.get(str(v), d) for v, d in zip(labels.tolist(), default, strict=True)]


def align_clusters(predictions: list[np.ndarray], n_clusters: list[int]) -> list[np.ndarray]:
    """Per member, a lookup from its cluster codes to the shared codes.

    The first member (the champion) is the reference and keeps its codes; every other
    member's codes are matched to it by the Hungarian algorithm on the contingency table of
    their labels of the same sample pixels (:func:`geoensemble.ensemble.consensus.match_codes`).
    Clusters without a partner (a member with more clusters than the reference, or a cluster
    overlapping none) get extra codes after the reference's, distinct for every member, so
    that they never vote together by accident.

    Parameters
    ----------
    predictions
        Each member's cluster codes of the same sample pixels.
    n_clusters
        How many codes each member can output.
    """
    from geoensemble.ensemble.consensus import match_codes

    ref, k0 = np.asarray(predictions[0], np.int64), int(n_clusters[0])
    out = [np.arange(k0, dtype=np.int64)]
    next_code = k0
    for pred, k in zip(predictions[1:], n_clusters[1:], strict=True):
        lookup = match_codes(ref, np.asarray(pred, np.int64), n_reference=k0, n_labels=int(k))
        extra = lookup >= k0
        lookup[extra] = next_code + np.arange(int(extra.sum()))
        next_code += int(extra.sum())
        out.append(lookup)
    return out


def vote(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote and its vote count over members (axis 0 of ``(members, n)``).

    Ties go to the class of the earliest member among the tied ones (members are ordered
    best first). Costs ``members**2`` comparisons per pixel and no ``classes x pixels``
    table, so hundreds of classes cost nothing extra.
    """
    m = positions.shape[0]
    counts = np.zeros(positions.shape, dtype=np.int16)
    same = np.empty(positions.shape[1], dtype=bool)
    # member by member: no (members x members x pixels) or (members x pixels) temporaries
    for i in range(m):
        for j in range(m):
            np.equal(positions[j], positions[i], out=same)
            counts[i] += same
    best = np.argmax(counts, axis=0)  # first maximum = earliest member
    cols = np.arange(positions.shape[1])
    return positions[best, cols], counts[best, cols]


def _uses_proba_for_labels(model: Any) -> bool:
    """Trees and forests define predict as the argmax of predict_proba: compute it once."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import BaseDecisionTree

    forests = RandomForestClassifier | ExtraTreesClassifier | BaseDecisionTree
    return isinstance(final_step(model), forests)


# Rows per model call: forests accumulate a (rows x classes) float64 array per tree, which
# stays in cache at this size; on a whole 1 Mpx block they run about 2x slower.
ROWS_PER_CALL = 65_536


def _rows(fn: Any, x: np.ndarray) -> np.ndarray:
    """``fn(x)`` in slices of :data:`ROWS_PER_CALL` rows, concatenated."""
    if x.shape[0] <= ROWS_PER_CALL:
        return np.asarray(fn(x))
    return np.concatenate(
        [np.asarray(fn(x[i : i + ROWS_PER_CALL])) for i in range(0, x.shape[0], ROWS_PER_CALL)]
    )


@dataclass
class BlockResult:
    """One block's outputs, valid-pixel count and class histogram (by position)."""

    arrays: dict[str, np.ndarray]
    n_valid: int
    histogram: np.ndarray | None = None
    #: Seconds the block took where it ran (a thread here or a dask worker): reading and
    #: tabling its valid pixels, then predicting them.
    read_seconds: float = 0.0
    predict_seconds: float = 0.0


@dataclass
class BlockPredictor:
    """Everything needed to turn a ``(features, rows, cols)`` block into output arrays.

    ``features`` is the union of the members' inputs in reading order; ``columns[i]`` picks
    member ``i``'s inputs in its own order.
    """

    members: list[LoadedMember]
    features: list[str]
    scheme: ClassScheme
    outputs: list[str]
    nan_threshold: int = 0
    columns: list[np.ndarray] = field(default_factory=list)
    proba: bool = False

    def __post_init__(self) -> None:
        idx = {n: i for i, n in enumerate(self.features)}
        self.columns = [np.array([idx[n] for n in m.feature_names]) for m in self.members]
        self.proba = any(o in self.outputs for o in ("probabilities", "max_probability"))

    @property
    def main(self) -> str:
        """The output whose histogram summarises the run."""
        return "vote" if "vote" in self.outputs else "member:0"

    def _table(self, table: np.ndarray, i: int) -> np.ndarray:
        cols = self.columns[i]
        if np.array_equal(cols, np.arange(table.shape[1])):
            return table
        return np.ascontiguousarray(table[:, cols])

    def predict_table(self, table: np.ndarray) -> dict[str, np.ndarray]:
        """Per-pixel outputs for a table of valid pixels (one row each)."""
        n = table.shape[0]
        out: dict[str, np.ndarray] = {}
        if self.scheme.kind == REGRESSOR:
            values = [
                np.asarray(m.model.predict(self._table(table, i)), np.float32).reshape(n)
                for i, m in enumerate(self.members)
            ]
            for i, v in enumerate(values):
                out[f"member:{i}"] = v
            if "mean" in self.outputs:
                out["mean"] = np.asarray(np.mean(values, axis=0), dtype=np.float32)
            return out
        n_cls = self.scheme.labels.size
        # the smallest integer type of the positions: a block's (members x pixels) array
        pos = np.empty((len(self.members), n), dtype=np.int16 if n_cls < 2**15 else np.int64)
        # One member and no per-class layers: only each pixel's largest probability is kept,
        # not a (pixels x classes) table (the forest's default outputs, ~30 MB a block).
        only_max = self.proba and len(self.members) == 1 and "probabilities" not in self.outputs
        mean_p = np.zeros((n, n_cls), dtype=np.float32) if self.proba and not only_max else None
        max_p = np.empty(n, dtype=np.float32) if only_max else None
        for i, m in enumerate(self.members):
            x = self._table(table, i)
            if self.proba:
                cls_pos = self.scheme.positions(final_step(m.model).classes_)
                from_proba = _uses_proba_for_labels(m.model)
                # Slice by slice, so no (pixels x classes) float64 array is ever whole.
                for r in range(0, n, ROWS_PER_CALL):
                    sl = slice(r, r + ROWS_PER_CALL)
                    p = np.asarray(m.model.predict_proba(x[sl]))
                    if mean_p is not None:
                        mean_p[sl, cls_pos] += p.astype(np.float32) / len(self.members)
                    else:
                        assert max_p is not None
                        max_p[sl] = p.max(axis=1)
                    if from_proba:
                        pos[i, sl] = cls_pos[np.argmax(p, axis=1)]
                if from_proba:
                    continue
            pos[i] = self.scheme.positions(_rows(m.model.predict, x), i)
        codes = self._codes()
        for i in range(len(self.members)):
            if f"member:{i}" in self.outputs:
                out[f"member:{i}"] = codes[pos[i]]
        if "vote" in self.outputs or "agreement" in self.outputs:
            winner, count = vote(pos)
            out["vote"] = codes[winner]
            out["agreement"] = np.rint(100 * count / len(self.members)).astype(np.uint8)
        if mean_p is not None:
            if "probabilities" in self.outputs:
                out["probabilities"] = np.rint(100 * mean_p.T).astype(np.uint8)
            out["max_probability"] = np.rint(100 * mean_p.max(axis=1)).astype(np.uint8)
        elif max_p is not None:
            out["max_probability"] = np.rint(100 * max_p).astype(np.uint8)
        out["_main"] = pos[0] if self.main == "member:0" else winner
        return out

    def _codes(self) -> np.ndarray:
        """The class codes in the maps' own type (uint8 for a byte map): a block's member
        maps are then a byte a pixel, not eight."""
        codes = self.scheme.codes
        dtype = np.dtype(self.scheme.dtype)
        if dtype.kind in "iu" and codes.size and np.iinfo(dtype).max >= int(codes.max()):
            return codes.astype(dtype)
        return codes

    def tabulate(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The block's valid-pixel mask and table: all :meth:`predict_valid` needs, so
        that a caller can let go of the block (its largest array) before the models run."""
        mask = valid_mask(block, nan_threshold=self.nan_threshold)
        return mask, to_table(block, mask)

    def predict_valid(self, mask: np.ndarray, table: np.ndarray) -> BlockResult:
        """Outputs for a block's valid pixels (see :meth:`tabulate`); no model call if there
        are none."""
        n_valid = int(table.shape[0])
        shape = mask.shape
        if not n_valid:
            return BlockResult(self.empty(shape), 0, None)
        per_pixel = self.predict_table(table)
        main = per_pixel.pop("_main", None)
        hist = None
        if main is not None:
            hist = np.bincount(main, minlength=self.scheme.labels.size)
        arrays = {}
        for key in self.outputs:
            dtype, nodata, bands = self.layout(key)
            v = per_pixel[key]
            if bands > 1:
                arr = np.full((bands, *shape), nodata, dtype=dtype)
                arr[:, mask] = v
                arrays[key] = arr
            else:
                arrays[key] = from_table(v, mask, fill=nodata, dtype=dtype)
        return BlockResult(arrays, n_valid, hist)

    def empty(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        out = {}
        for key in self.outputs:
            dtype, nodata, bands = self.layout(key)
            full = (bands, *shape) if bands > 1 else shape
            out[key] = np.full(full, nodata, dtype=dtype)
        return out

    def layout(self, key: str) -> tuple[str, float, int]:
        """dtype, nodata and band count of one output."""
        if self.scheme.kind == REGRESSOR:
            return "float32", float("nan"), 1
        if key in ("agreement", "max_probability"):
            return "uint8", PCT_NODATA, 1
        if key == "probabilities":
            return "uint8", PCT_NODATA, int(self.scheme.labels.size)
        return self.scheme.dtype, self.scheme.nodata, 1


def output_keys(members: list[LoadedMember], outputs: Any) -> list[str]:
    """Which outputs a run writes, from ``outputs`` (which maps to keep) and the members' kinds."""
    many = len(members) > 1
    keys = [f"member:{i}" for i in range(len(members)) if not many or outputs.members]
    kind = members[0].kind
    if kind == REGRESSOR:
        return [*keys, "mean"] if many else keys
    if many:
        if outputs.vote or outputs.agreement:
            keys += ["vote"] + (["agreement"] if outputs.agreement else [])
    if kind == CLASSIFIER and all(hasattr(m.model, "predict_proba") for m in members):
        keys += ["probabilities"] if outputs.probabilities else []
        keys += ["max_probability"] if outputs.max_probability else []
    return keys
