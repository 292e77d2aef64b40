"""What a config may make geoensemble import and run, and what a model file may hold.

A spec names code: every ``_target_`` (of an estimator, a pipeline step, a custom feature
function and anything nested in them) is imported and called. A registered model's skops file
names the types skops builds when it is loaded. Both are decided here, by geoensemble's own
allow-lists plus the modules, types and parameters the user trusts (``modules``, ``types``,
``params``); never by the file that is being read.

Messages name the value they refuse by the ``key`` the caller gives (an argument name such as
``estimator._target_``), and the trusted lists by this module's parameters; ``arguments``
(:class:`geoensemble.errors.GeoEnsembleError`) says which parameter each name stands for, and
a caller adds the parameter its ``key`` stands for with ``arguments=``.

The one policy for ``_target_`` (:func:`check_target`, :func:`resolve`):

- a module on :data:`BLOCKED` (``os``, ``subprocess``, ``pydoc``, ``builtins``...) can never be
  named, not even through ``modules``;
- estimators, steps and every other instantiated ``_target_`` are classes from
  :data:`CLASS_MODULES` (scikit-learn, geoensemble's transformers...);
- custom feature functions come from :data:`FUNCTION_MODULES` (geoensemble's examples);
- ``hydra.utils.get_method`` / ``get_class`` / ``get_object`` references (``score_func`` of
  ``SelectKBest``) name objects of :data:`REFERENCE_MODULES`;
- anything else only from a module the user lists in ``modules`` (and its submodules);
- no written path may name a private module or object (a part starting with ``_``, such as
  ``sklearn.utils._testing``), and no object defined in a package's tests or test helpers
  (``tests``, ``testing``, ``_testing``, ``conftest`` inside a package) is ever built, whatever
  is trusted.

The written path and the module that really defines the object are both checked, so a
re-export (``sklearn.something.os.system``) does not pass.

An allowed class can still be told to read or write files: ``FeatureAgglomeration(memory=...)``
unpickles whatever its ``joblib.Memory`` cache folder holds, ``numpy.memmap(filename=...)``
truncates a file. So the arguments of every ``_target_`` are checked too
(:func:`check_params`): the parameters in :data:`FILE_PARAMS` or ending in one of
:data:`FILE_SUFFIXES` (unless null, a number or a boolean), Hydra's positional ``_args_`` and
``_partial_`` (``numpy.memmap``'s file goes unnamed in ``_args_``), and a string given to a
parameter that takes a callable (:data:`CALLABLE_SUFFIXES`) are refused unless the user lists
the parameter's name in ``params``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from geoensemble.errors import ConfigError

# Modules (and their submodules) that run commands, touch files, import or unpickle code.
BLOCKED: frozenset[str] = frozenset(
    {
        "__main__",
        "_io",
        "_pickle",
        "_posixsubprocess",
        "_thread",
        "asyncio",
        "atexit",
        "bdb",
        "builtins",
        "code",
        "codeop",
        "compileall",
        "concurrent",
        "cloudpickle",
        "ctypes",
        "dask",
        "dbm",
        "dill",
        "distributed",
        "distutils",
        "doctest",
        "ensurepip",
        "fileinput",
        "fsspec",
        "ftplib",
        "functools",
        "gc",
        "glob",
        "http",
        "hydra",
        "importlib",
        "inspect",
        "io",
        "joblib",
        "logging",
        "marshal",
        "mlflow",
        "multiprocessing",
        "nt",
        "ntpath",
        "omegaconf",
        "operator",
        "os",
        "pathlib",
        "pdb",
        "pickle",
        "pip",
        "pkgutil",
        "platform",
        "posix",
        "posixpath",
        "pty",
        "py_compile",
        "pydoc",
        "requests",
        "runpy",
        "setuptools",
        "shelve",
        "shutil",
        "signal",
        "site",
        "smtplib",
        "socket",
        "sqlite3",
        "ssl",
        "subprocess",
        "sys",
        "sysconfig",
        "tarfile",
        "telnetlib",
        "tempfile",
        "threading",
        "timeit",
        "types",
        "urllib",
        "venv",
        "webbrowser",
        "zipfile",
        "zipimport",
    }
)

# Classes a config may instantiate: estimators, transformers and their arguments.
CLASS_MODULES: tuple[str, ...] = (
    "sklearn",
    "geoensemble.features.transformers",
    "xgboost",
    "lightgbm",
)
# Custom feature functions a config may call as ``fn(stack, **kwargs)``.
FUNCTION_MODULES: tuple[str, ...] = ("geoensemble.features.custom",)
# Objects a config may pass as an argument through ``hydra.utils.get_method`` and friends.
REFERENCE_MODULES: tuple[str, ...] = ("sklearn", "geoensemble.features")
# The only Hydra functions a config may name: they look up their ``path``, checked as well.
REFERENCE_TARGETS: frozenset[str] = frozenset(
    {"hydra.utils.get_method", "hydra.utils.get_class", "hydra.utils.get_object"}
)

CLASS, FUNCTION, REFERENCE = "class", "function", "reference"
_ROOTS = {CLASS: CLASS_MODULES, FUNCTION: FUNCTION_MODULES, REFERENCE: REFERENCE_MODULES}
_WHAT = {CLASS: "a class", FUNCTION: "a function", REFERENCE: "a function or class"}

# Types a registered model's model.skops may hold beyond skops' own defaults (scikit-learn's
# estimators, numpy arrays, builtins containers): everything the configs in conf/ build
# (tests/test_trust.py checks it), plus the internals of common scikit-learn estimators.
SKOPS_TYPES: tuple[str, ...] = (
    "geoensemble.features.transformers.RandomBandSubset",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.feature_selection._mutual_info.mutual_info_classif",
    "sklearn.feature_selection._mutual_info.mutual_info_regression",
    "sklearn.feature_selection._univariate_selection.chi2",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._univariate_selection.f_regression",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
)

# Parameters that name a file, a folder, a cache or a pickle store (read or written).
FILE_PARAMS: frozenset[str] = frozenset(
    {
        "cache",
        "cachedir",
        "dir",
        "directory",
        "dirname",
        "file",
        "filename",
        "filepath",
        "folder",
        "location",
        "memory",
        "path",
    }
)
FILE_SUFFIXES: tuple[str, ...] = ("_file", "_filename", "_path", "_dir", "_folder", "_cache")
# A string given to one of these is a callable named by a string (imported by the library).
CALLABLE_SUFFIXES: tuple[str, ...] = ("func", "function", "callback", "callbacks", "hook")
# Module parts that hold a package's tests or test helpers: never built, even when trusted.
TEST_PARTS: frozenset[str] = frozenset({"tests", "testing", "_testing", "conftest"})

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _within(module: str, roots: Iterable[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _blocked(dotted: str) -> str | None:
    """The blocked module ``dotted`` lies in, if any."""
    root = dotted.split(".", 1)[0]
    return root if root in BLOCKED else None


def _check_dotted(
    key: str, value: Any, example: str, arguments: Mapping[str, str] | None = None
) -> str:
    text = str(value) if isinstance(value, str) else ""
    parts = text.split(".")
    if not _DOTTED.fullmatch(text) or any(p.startswith("__") for p in parts):
        raise ConfigError(
            f"{key}={value!r} is not a dotted Python name: use the module path and name, "
            f"e.g. {example}",
            arguments=arguments,
        )
    private = [p for p in parts if p.startswith("_")]
    if private:
        raise ConfigError(
            f"{key}={value!r} names the private part {private[0]!r}: no config may name a "
            f"private module or object; use the public name, e.g. {example}",
            arguments=arguments,
        )
    return text


def _test_code(module: str) -> bool:
    # Inside a package (sklearn.utils._testing, numpy.testing): a top-level module of the
    # user's own, listed in ``modules``, is theirs to name.
    return any(part in TEST_PARTS for part in module.split(".")[1:])


def check_modules(modules: Sequence[str], key: str = "modules") -> None:
    """Check ``modules`` (the modules the user trusts): dotted module names, none of them a
    blocked module. ``key`` names the list in messages.

    Raises
    ------
    ConfigError
        Naming the entry and why it cannot be trusted.
    """
    arguments = {"modules": "check_target.modules"}
    for i, m in enumerate(modules):
        name = _check_dotted(f"{key}[{i}]", m, "my_features", arguments)
        bad = _blocked(name)
        if bad:
            raise ConfigError(
                f"{key}[{i}]={m!r} cannot be trusted: module {bad} runs commands or touches "
                f"files, and no config may name it; list the module of your own code instead",
                arguments={"modules": "check_target.modules"},
            )


def check_types(types: Sequence[str], key: str = "types") -> None:
    """Check ``types`` (the types the user trusts a model to hold): dotted ``module.Type``
    names outside the blocked modules. ``key`` names the list in messages.

    Raises
    ------
    ConfigError
        Naming the entry and why it cannot be trusted.
    """
    arguments = {"types": "check_types.types"}
    for i, t in enumerate(types):
        name = _check_dotted(f"{key}[{i}]", t, "mypackage.transformers.MyScaler", arguments)
        bad = _blocked(name)
        if "." not in name or bad:
            why = (
                f"module {bad} runs commands or touches files, and no model may hold it"
                if bad
                else "a type needs its module, e.g. mypackage.transformers.MyScaler"
            )
            raise ConfigError(
                f"{key}[{i}]={t!r} cannot be trusted: {why}",
                arguments={"types": "check_types.types"},
            )


def _with_modules(arguments: Mapping[str, str] | None) -> dict[str, str]:
    """``arguments`` and the parameter ``modules`` the messages of a target name."""
    return {**(arguments or {}), "modules": "check_target.modules"}


def check_target(
    target: Any,
    key: str,
    *,
    kind: str = CLASS,
    modules: Sequence[str] = (),
    arguments: Mapping[str, str] | None = None,
) -> str:
    """Check a ``_target_`` as written, without importing anything.

    Parameters
    ----------
    target
        The dotted path of the ``_target_``.
    key
        The name of the value in messages (e.g. ``estimator._target_``).
    kind
        ``class`` (instantiated), ``function`` (a custom feature function) or
        ``reference`` (the ``path`` of ``hydra.utils.get_method`` and friends).
    modules
        More modules the user trusts.
    arguments
        The argument names ``key`` uses, each mapped to the parameter it stands for
        (``{"estimator": "fit_ensemble.estimator"}``), added to the errors' ``arguments``.

    Returns
    -------
    str
        The target.

    Raises
    ------
    ConfigError
        If the path is not a dotted name, names a blocked module, or lies outside both the
        allow-list of ``kind`` and ``modules``.
    """
    args = _with_modules(arguments)
    path = _check_dotted(key, target, "sklearn.cluster.MiniBatchKMeans", args)
    if _test_code(path):
        raise ConfigError(
            f"{key}={path!r} names a package's test code: no config may build it; name a "
            f"class or function of the package itself",
            arguments=args,
        )
    bad = _blocked(path)
    if bad:
        raise ConfigError(
            f"{key}={path!r} names module {bad}, which runs commands or touches files: no "
            f"config may name it; use a scikit-learn class, or a function of your own module "
            f"listed in modules",
            arguments=args,
        )
    if not (_within(path, _ROOTS[kind]) or _within(path, modules)):
        top = path.split(".", 1)[0]
        raise ConfigError(
            f"{key}={path!r} names code outside geoensemble's allow-list "
            f"({', '.join(_ROOTS[kind])}): if you wrote or trust module {top}, add it with "
            f"modules=[{top}]",
            arguments=args,
        )
    return path


def _import_object(path: str) -> Any:
    """The object at dotted ``path``: the longest importable module, then attributes."""
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name and not ".".join(parts[:i]).startswith(exc.name):
                raise  # a module that exists failed to import one of its own
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(f"No module named {parts[0]!r}")


def resolve(
    target: Any,
    key: str,
    *,
    kind: str = CLASS,
    modules: Sequence[str] = (),
    arguments: Mapping[str, str] | None = None,
) -> Any:
    """Check ``target`` (:func:`check_target`), import it, and check what it really is.

    Returns
    -------
    Any
        The class or function.

    Raises
    ------
    ConfigError
        If it is not allowed (as written, or by the module that defines it), cannot be
        imported, or is not ``kind``.
    """
    path = check_target(target, key, kind=kind, modules=modules, arguments=arguments)
    args = _with_modules(arguments)
    try:
        obj = _import_object(path)
    except Exception as exc:  # ImportError, AttributeError, a module's own import errors
        cause = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"{key}={path!r} cannot be imported; check the module and name, and that the "
            f"module is installed or on PYTHONPATH ({cause})",
            arguments=arguments,
        ) from None
    home = getattr(obj, "__module__", None)
    if not isinstance(home, str):
        home = ""
    if _test_code(home):
        raise ConfigError(
            f"{key}={path!r} is defined in module {home}, a package's test code: no config "
            f"may build it; name a class or function of the package itself",
            arguments=arguments,
        )
    bad = _blocked(home)
    if bad or not (_within(home, _ROOTS[kind]) or _within(home, modules)):
        raise ConfigError(
            f"{key}={path!r} is defined in module {home or '(unknown)'}, not in "
            f"{', '.join([*_ROOTS[kind], *modules])}: name the object where it is defined"
            + ("" if bad else ", or add that module to modules"),
            arguments=args,
        )
    ok = isinstance(obj, type) if kind == CLASS else callable(obj)
    if kind == FUNCTION and isinstance(obj, type):
        ok = False
    if not ok:
        raise ConfigError(
            f"{key}={path!r} is a {type(obj).__name__}, not {_WHAT[kind]}: name {_WHAT[kind]}",
            arguments=arguments,
        )
    return obj


def _targets(node: Any, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping holding a ``_target_`` in ``node`` (nested anywhere), with its key."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield key, node
        for k, v in node.items():
            yield from _targets(v, f"{key}.{k}")
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from _targets(v, f"{key}[{i}]")


def risky_param(name: str, value: Any) -> str | None:
    """Why parameter ``name=value`` of a ``_target_`` may touch files or code, if it may."""
    if name in {"_args_", "_partial_"}:
        return "passes unnamed arguments or makes a callable past this check"
    harmless = value is None or isinstance(value, bool | int | float)  # Lars(fit_path=True)
    if (name in FILE_PARAMS or name.endswith(FILE_SUFFIXES)) and not harmless:
        return "reads or writes files, caches or pickles"
    if isinstance(value, str) and name.endswith(CALLABLE_SUFFIXES):
        return "names a callable by a string"
    return None


def check_params(
    node: Mapping[str, Any],
    key: str,
    params: Sequence[str] = (),
    *,
    arguments: Mapping[str, str] | None = None,
) -> None:
    """Refuse the arguments of one ``{_target_: ..., **kwargs}`` node that touch files or code.

    Parameters
    ----------
    node
        The mapping holding the ``_target_``.
    key
        The name of the node in messages.
    params
        Parameter names the user allows anyway.
    arguments
        The argument names ``key`` uses, each mapped to the parameter it stands for.

    Raises
    ------
    ConfigError
        Naming the first refused parameter and how to allow it.
    """
    for name, value in node.items():
        if name in {"_target_", "_convert_", "_recursive_"} or name in params:
            continue
        why = risky_param(str(name), value)
        if why:
            raise ConfigError(
                f"{key}.{name}={value!r} is refused: parameter {name!r} {why}, which "
                f"geoensemble refuses unless you allow it by name with params=[{name}] (only "
                f"for a folder or file you own)",
                arguments={**(arguments or {}), "params": "check_params.params"},
            )


def check_space_names(
    space: Mapping[str, Any],
    key: str,
    params: Sequence[str] = (),
    *,
    arguments: Mapping[str, str] | None = None,
) -> None:
    """Refuse searched parameter names (the keys of a search space ``key``) that
    :func:`risky_param` refuses."""
    for name, value in space.items():
        param = str(name).rsplit("__", 1)[-1]
        choices = value if isinstance(value, list | tuple) else [value]
        why = next(filter(None, (risky_param(param, v) for v in choices)), None)
        if why and param not in params:
            raise ConfigError(
                f"{key}.{name} is refused: parameter {param!r} {why}, which geoensemble does "
                f"not search unless you allow it with params=[{param}]",
                arguments={**(arguments or {}), "params": "check_params.params"},
            )


def check_spec(
    spec: Any,
    key: str,
    *,
    modules: Sequence[str] = (),
    resolve_targets: bool = False,
    params: Sequence[str] | None = None,
    arguments: Mapping[str, str] | None = None,
) -> None:
    """Apply the policy to every ``_target_`` in ``spec``, an instantiable config node.

    Instantiated targets must be classes; ``hydra.utils.get_method`` / ``get_class`` /
    ``get_object`` are allowed as references whose ``path`` is checked in turn.

    Parameters
    ----------
    spec
        A ``{_target_: ..., **kwargs}`` mapping (or a list or mapping of them).
    key
        Its name in messages, e.g. ``steps['scale']``.
    modules
        More modules the user trusts.
    resolve_targets
        Also import each target and check the object (:func:`resolve`); without it only the
        written paths are checked (config validation, which imports nothing).
    params
        Parameter names the user allows anyway; when given, every node's arguments are
        checked too (:func:`check_params`).
    arguments
        The argument names ``key`` uses, each mapped to the parameter it stands for.

    Raises
    ------
    ConfigError
        For the first target that the policy refuses.
    """
    check = resolve if resolve_targets else check_target
    for where, node in _targets(spec, key):
        target = node["_target_"]
        if target in REFERENCE_TARGETS:
            path = node.get("path")
            check(path, f"{where}.path", kind=REFERENCE, modules=modules, arguments=arguments)
            continue
        check(target, f"{where}._target_", kind=CLASS, modules=modules, arguments=arguments)
        if params is not None:
            check_params(node, where, params, arguments=arguments)


def check_custom(
    spec: Mapping[str, Any],
    key: str,
    *,
    modules: Sequence[str] = (),
    resolve_targets: bool = False,
    params: Sequence[str] | None = None,
    arguments: Mapping[str, str] | None = None,
) -> Any:
    """Apply the policy to a custom feature function's entry: its function and its arguments
    (``key``, ``arguments``: see :func:`check_spec`).

    Returns
    -------
    Any
        The function when ``resolve_targets`` (else its checked path).
    """
    check = resolve if resolve_targets else check_target
    fn = check(
        spec["_target_"], f"{key}._target_", kind=FUNCTION, modules=modules, arguments=arguments
    )
    args = {k: v for k, v in spec.items() if k != "_target_"}
    if params is not None:
        check_params(spec, key, params, arguments=arguments)
    check_spec(
        args,
        key,
        modules=modules,
        resolve_targets=resolve_targets,
        params=params,
        arguments=arguments,
    )
    return fn


def skops_trusted(extra: Sequence[str] = ()) -> list[str]:
    """The types a registered model may hold: :data:`SKOPS_TYPES` plus ``extra`` (the types
    the user trusts)."""
    return sorted({*SKOPS_TYPES, *map(str, extra)})
