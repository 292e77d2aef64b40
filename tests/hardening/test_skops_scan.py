"""skops imported without its scan of every scikit-learn estimator (a fast start), with the
same trust: scikit-learn's public estimators load, anything else must be on our allow-list.

The scan-free import only happens in a process that has not imported skops yet, so the
checks run in a fresh Python process (real store, real models, real files).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from geoensemble.tracking.models import public_estimators
from tests.conftest import ROOT, tool_env

# Runs in a fresh process: import skops the fast way first, then register and load models.
SCRIPT = r"""
import json, shutil, sys
from pathlib import Path

from geoensemble.tracking.models import import_skops

sio = import_skops()
out = {
    "scan_modules": sorted(m for m in ("sklearn.neural_network",) if m in sys.modules),
    "default_estimators": len(sys.modules["skops.io._trusted_types"].SKLEARN_ESTIMATOR_TYPE_NAMES),
}

import mlflow
import numpy as np

from geoensemble import tracking
from geoensemble.app.config import TrackingConfig
from geoensemble.app.tracker import tracker_for
from geoensemble.errors import InputFileError
from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, register, valid_table

tmp = Path(sys.argv[1])
t = TrackingConfig(uri=f"sqlite:///{tmp}/mlflow.db", model_name="geoensemble")
_, versions = register(t, [fit_kmeans(NAMES), fit_forest(NAMES)], NAMES)
tracker = tracker_for(t)
tracker.open()
X, _ = valid_table(make_scene(seed=1), NAMES)
loaded = {}
for v in versions:
    m = tracker.load_model(f"models:/geoensemble/{v}")
    loaded[v] = {
        "type": type(m.model).__name__,
        "names": m.feature_names,
        "predict": np.asarray(m.model.predict(X)).tolist(),
    }
out["loaded"] = loaded

# A copy of a registered model whose model.skops holds types that are not trusted: an
# estimator outside scikit-learn, and a scikit-learn estimator that is not public.
from sklearn.utils._testing import MinimalClassifier
from tests.hardening.estimators import FaultyKMeans

mlflow.set_tracking_uri(t.uri)
src = mlflow.artifacts.download_artifacts(f"models:/geoensemble/{versions[0]}")
refused = {}
for name, obj in {"faulty": FaultyKMeans(), "private": MinimalClassifier()}.items():
    copy = tmp / name
    shutil.copytree(src, copy)
    sio.dump(obj, copy / "model.skops")
    try:
        tracking.load_sklearn_flavour(str(copy), mlflow.models.Model.load(copy).flavors)
        refused[name] = None
    except InputFileError as exc:
        refused[name] = str(exc)
out["refused"] = refused
print("RESULT " + json.dumps(out))
"""


def test_public_estimators_are_exactly_what_skops_scan_lists() -> None:
    from sklearn.utils import all_estimators
    from skops.io._utils import get_type_name

    scanned = [get_type_name(c) for _, c in all_estimators()]
    scanned = [n for n in scanned if n.startswith("sklearn.")]
    assert len(scanned) > 100
    assert public_estimators(scanned) == scanned
    not_estimators = [
        "sklearn.tree._tree.Tree",  # not an estimator (on our own list instead)
        "sklearn.base.BaseEstimator",
        "sklearn.utils._testing.MinimalClassifier",  # an estimator, but not public
        "tests.hardening.estimators.FaultyKMeans",  # an estimator outside scikit-learn
        "sklearn.os",
        "os.system",
        "sklearn.cluster._kmeans.__class__",
        "sklearn..KMeans",
    ]
    assert public_estimators(not_estimators) == []


def test_models_load_and_untrusted_types_are_refused_without_the_scan(tmp_path: Path) -> None:
    env = tool_env(PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    env.pop("GEOENSEMBLE_ROOT", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=tmp_path,
        env={**env, "GEOENSEMBLE_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    # The scan really was skipped: a module only it imports is not loaded.
    assert out["scan_modules"] == []
    assert out["default_estimators"] == 0

    # Both models load, with their signature's features, and predict as the originals do.
    from tests.predict.conftest import NAMES, fit_forest, fit_kmeans, make_scene, valid_table

    X, _ = valid_table(make_scene(seed=1), NAMES)
    (kmeans, forest) = out["loaded"].values()
    assert kmeans["type"] == "Pipeline" and forest["type"] == "RandomForestClassifier"
    assert kmeans["names"] == forest["names"] == NAMES
    assert kmeans["predict"] == fit_kmeans(NAMES).predict(X).tolist()  # type: ignore[attr-defined]
    assert forest["predict"] == fit_forest(NAMES).predict(X).tolist()  # type: ignore[attr-defined]

    refused = out["refused"]
    assert refused["faulty"] is not None and (
        "holds types geoensemble does not trust ['tests.hardening.estimators.FaultyKMeans']"
        in refused["faulty"]
    )
    assert refused["private"] is not None and (
        "holds types geoensemble does not trust ['sklearn.utils._testing.MinimalClassifier']"
        in refused["private"]
    )
