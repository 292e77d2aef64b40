"""Which selection criterion picks the member closest to the truth? (not a timing benchmark)

One ensemble of K-Means members (the README's Python API recipe: StandardScaler, PCA(6),
MiniBatchKMeans; ``n_clusters`` drawn from 4..16, one generation of random members so that
every criterion chooses among the same members) is fitted per seed. Each member has its
``aic``, ``bic`` (partition criterion in the common space) and ``mean_agreement`` (mean adjusted
Rand index with the other members, needs no truth). For each criterion the report gives the
member it picks and, where a truth map exists, that member's adjusted Rand index with the
truth over every valid pixel and its rank among the members by that ARI (1 = closest).

- the embedded scene (``geoensemble.synthetic``, 800 x 800 px, 7 bands + 4 indices), whose
  truth map is known;
- ``../shared/data/rmnp`` (real blue/green/red + DEM), which has no truth: the report gives
  the criteria's picks and how much the picked maps agree with each other (ARI).

Run: ``python benchmarks/criteria_report.py [--seeds 0,1,2] [--size 12]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import geoensemble as ge
from geoensemble.synthetic import write_scene

CRITERIA = (("aic", min), ("bic", min), ("mean_agreement", max))
RMNP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rmnp"


def recipe(n_features: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=min(6, n_features), random_state=0)),
            ("kmeans", MiniBatchKMeans(n_init=3, random_state=0)),
        ]
    )


def table(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's features as rows, and the mask of rows with no NaN."""
    X = np.stack([ds[v].values.ravel() for v in ds.data_vars], axis=1).astype(np.float32)
    return X, np.isfinite(X).all(axis=1)


def picks(feats: Any, seed: int, size: int) -> tuple[list[Any], dict[str, int]]:
    """The members of one search and the index of the member each criterion picks."""
    ens = ge.fit_ensemble(
        recipe(len(feats.data_vars)),
        feats,
        space={"kmeans__n_clusters": {"low": 4, "high": 16}},
        size=size,
        generations=1,
        keep=size,
        seed=seed,
    )
    members = ens.members
    chosen = {}
    for name, best in CRITERIA:
        values = [m.scores[name] for m in members]
        chosen[name] = values.index(best(values))
    return members, chosen


def embedded(seeds: list[int], size: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:  # the stack reads its files lazily
        paths = write_scene(tmp, seed=42)
        bands = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
        layers = [ge.LayerSpec(b, file=rf"^{b}\.TIF$") for b in bands]
        ds = ge.load_array(str(paths["scene"]), layers=layers)
        feats = ge.featurize(ds, sensor="landsat8", indices=["ndwi", "ndvi", "ndsi", "nbr"])
        truth = ge.load_array(str(paths["truth"]))
        t = np.asarray(truth[next(iter(truth.data_vars))].values).ravel()
        return [line for seed in seeds for line in _embedded_seed(feats, t, seed, size)]


def _embedded_seed(feats: Any, t: np.ndarray, seed: int, size: int) -> list[str]:
    X, ok = table(feats)
    ok &= np.isfinite(t) & (t >= 0)
    members, chosen = picks(feats, seed, size)
    ari = [adjusted_rand_score(t[ok], m.pipeline.predict(X[ok])) for m in members]
    order = np.argsort(-np.asarray(ari))
    rank = {int(i): r + 1 for r, i in enumerate(order)}
    lines = []
    for name, i in chosen.items():
        m = members[i]
        lines.append(
            f"| embedded | {seed} | {name} | k={m.pipeline[-1].n_clusters} | "
            f"{ari[i]:.3f} | {rank[i]} of {len(members)} | {max(ari):.3f} |"
        )
    return lines


def rmnp(seeds: list[int], size: int) -> list[str]:
    if not RMNP.is_dir():
        return ["| rmnp | - | - | skipped: ../shared/data/rmnp is absent | | | |"]
    files = {"blue": "blue", "green": "green", "red": "red", "dem": "rmnp-dem"}
    layers = [ge.LayerSpec(n, file=rf"^{f}\.tif$") for n, f in files.items()]
    ds = ge.load_array(str(RMNP), layers=layers, align="reproject", reference="red")
    X, ok = table(ds)
    lines = []
    for seed in seeds:
        members, chosen = picks(ds, seed, size)
        labels = {n: members[i].pipeline.predict(X[ok]) for n, i in chosen.items()}
        for name, i in chosen.items():
            others = ", ".join(
                f"{o} {adjusted_rand_score(labels[name], labels[o]):.3f}"
                for o in labels
                if o != name
            )
            k = members[i].pipeline[-1].n_clusters
            lines.append(f"| rmnp | {seed} | {name} | k={k} | no truth | ARI with: {others} | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=12)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(__doc__)
    print("| scene | seed | criterion | member picked | ARI with truth | rank by ARI | best ARI |")
    print("|---|---|---|---|---|---|---|")
    for line in embedded(seeds, args.size) + rmnp(seeds, args.size):
        print(line, flush=True)


if __name__ == "__main__":
    main()
