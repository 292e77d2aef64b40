"""Predicting one block with every member, and combining the members.

The class codes of all members share one :class:`ClassScheme` so that their maps, the vote
and the probabilities speak the same language: clusterers output ``0..k-1``; classifiers
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
from geoensemble.predict.models import CLASSIFIER, CLUSTER, REGRESSOR, Member, final_step

# Percent layers (agreement, probabilities) are uint8 0..100 with this nodata.
PCT_NODATA = 255


@dataclass
class ClassScheme:
    """The shared class codes of the members' outputs."""

    kind: str
    labels: np.ndarray  # sorted distinct labels the members can output
    codes: np.ndarray  # the map code of each label
    names: list[str]

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
    def of(cls, members: list[Member], names: list[str] | None = None) -> ClassScheme:
        """The union of the members' classes (or ``0..max k-1`` for clusterers)."""
        from geoensemble.predict.models import n_classes_of

        kind = members[0].kind
        if kind == REGRESSOR:
            return cls(REGRESSOR, np.empty(0), np.empty(0, np.int64), [])
        if kind == CLUSTER:
            k = max(n_classes_of(m.model) for m in members)
            labels = np.arange(k)
            default = [f"cluster {i}" for i in range(k)]
            return cls(CLUSTER, labels, labels.astype(np.int64), names or default)
        labels = np.unique(np.concatenate([final_step(m.model).classes_ for m in members]))
        if labels.dtype.kind in "iu" and labels.min() >= 0:
            codes = labels.astype(np.int64)
            default = [f"class {v}" for v in labels]
        else:
            codes = np.arange(labels.size, dtype=np.int64)
            default = [str(v) for v in labels]
        return cls(CLASSIFIER, labels, codes, names or default)

    def positions(self, pred: np.ndarray) -> np.ndarray:
        """Index into ``labels`` of each predicted label."""
        if self.kind == CLUSTER:
            return np.asarray(pred, dtype=np.int64)
        return np.searchsorted(self.labels, pred).astype(np.int64)

    def colour_table(self) -> dict[int, tuple[int, int, int]]:
        from geoensemble.classes import palette

        return {int(c): col for c, col in zip(self.codes, palette(len(self.codes)), strict=True)}


def vote(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote and its vote count over members (axis 0 of ``(members, n)``).

    Ties go to the class of the earliest member among the tied ones (members are ordered
    best first). Costs ``members**2`` comparisons per pixel and no ``classes x pixels``
    table, so hundreds of classes cost nothing extra.
    """
    m = positions.shape[0]
    counts = np.zeros(positions.shape, dtype=np.int16)
    for i in range(m):
        counts[i] = (positions == positions[i]).sum(axis=0)
    best = np.argmax(counts, axis=0)  # first maximum = earliest member
    cols = np.arange(positions.shape[1])
    return positions[best, cols], counts[best, cols]


def _uses_proba_for_labels(model: Any) -> bool:
    """Trees and forests define predict as the argmax of predict_proba: compute it once."""
    from sklearn.ensemble._forest import ForestClassifier
    from sklearn.tree import BaseDecisionTree

    return isinstance(final_step(model), ForestClassifier | BaseDecisionTree)


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


@dataclass
class BlockPredictor:
    """Everything needed to turn a ``(features, rows, cols)`` block into output arrays.

    ``features`` is the union of the members' inputs in reading order; ``columns[i]`` picks
    member ``i``'s inputs in its own order.
    """

    members: list[Member]
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
        pos = np.empty((len(self.members), n), dtype=np.int64)
        mean_p = np.zeros((n, n_cls), dtype=np.float32) if self.proba else None
        for i, m in enumerate(self.members):
            x = self._table(table, i)
            if mean_p is not None:
                cls_pos = self.scheme.positions(final_step(m.model).classes_)
                from_proba = _uses_proba_for_labels(m.model)
                # Slice by slice, so no (pixels x classes) float64 array is ever whole.
                for r in range(0, n, ROWS_PER_CALL):
                    sl = slice(r, r + ROWS_PER_CALL)
                    p = np.asarray(m.model.predict_proba(x[sl]))
                    mean_p[sl, cls_pos] += p.astype(np.float32) / len(self.members)
                    if from_proba:
                        pos[i, sl] = cls_pos[np.argmax(p, axis=1)]
                if from_proba:
                    continue
            pos[i] = self.scheme.positions(_rows(m.model.predict, x))
        for i in range(len(self.members)):
            if f"member:{i}" in self.outputs:
                out[f"member:{i}"] = self.scheme.codes[pos[i]]
        if "vote" in self.outputs or "agreement" in self.outputs:
            winner, count = vote(pos)
            out["vote"] = self.scheme.codes[winner]
            out["agreement"] = np.rint(100 * count / len(self.members)).astype(np.uint8)
        if mean_p is not None:
            if "probabilities" in self.outputs:
                out["probabilities"] = np.rint(100 * mean_p.T).astype(np.uint8)
            out["max_probability"] = np.rint(100 * mean_p.max(axis=1)).astype(np.uint8)
        out["_main"] = pos[0] if self.main == "member:0" else winner
        return out

    def __call__(self, block: np.ndarray) -> BlockResult:
        """Outputs for one ``(features, rows, cols)`` block; no model call if it is empty."""
        mask = valid_mask(block, nan_threshold=self.nan_threshold)
        n_valid = int(mask.sum())
        shape = mask.shape
        if not n_valid:
            return BlockResult(self.empty(shape), 0, None)
        per_pixel = self.predict_table(to_table(block, mask))
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


def output_keys(members: list[Member], outputs: Any) -> list[str]:
    """Which outputs a run writes, from ``predict.outputs`` and the members' kinds."""
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
