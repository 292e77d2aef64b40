"""Blockwise execution: large tile-aligned blocks, read and predicted in parallel, in order
of completion, with a bounded number in flight so memory does not grow with the scene.

A block is read from the lazy (dask) feature dataset with dask's synchronous scheduler inside
a worker thread, so reading, feature building and prediction of different blocks overlap and
GDAL, Zarr and scikit-learn release the GIL. With a ``client`` (a distributed scheduler) the same
block function runs as tasks on the compute cluster instead.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geoensemble.compute import joined_pool
from geoensemble.io.profiles import TILE
from geoensemble.predict.models import env_threads, threads_held

if TYPE_CHECKING:
    from geoensemble.predict.timing import Phases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    """A window of the scene: row/col offset and size, in pixels."""

    row: int
    col: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def block_edge(size: int) -> int:
    """The block edge actually used: a multiple of the 512-px tile from 512 up.

    Smaller sizes are kept as they are (tiny scenes and tests); large ones are rounded to
    whole tiles so that no output tile is written by two blocks.
    """
    if size < TILE:
        return size
    return TILE * max(1, round(size / TILE))


#: Most bytes of one block's float32 features: many layers make smaller blocks, so memory
#: stays flat in the number of features (100 layers: 512-px blocks of 105 MB; 300: 256 px).
#: Blocks stay whole 512-px tiles up to ~120 layers: a tile read by parts is decoded once
#: per part.
BLOCK_FEATURE_BYTES = 128 << 20
#: Most bytes of float32 features of the blocks in flight on threads: with large blocks
#: (many layers) fewer threads run, rather than memory growing with the layers.
IN_FLIGHT_FEATURE_BYTES = 256 << 20


def threads_for(edge: int, n_features: int, threads: int) -> int:
    """``threads``, lowered so the ``threads + 1`` blocks in flight hold at most
    :data:`IN_FLIGHT_FEATURE_BYTES` of features (never below 1)."""
    per_block = edge * edge * max(1, n_features) * 4
    return max(1, min(threads, IN_FLIGHT_FEATURE_BYTES // max(1, per_block) - 1))


def feature_block_edge(size: int, n_features: int) -> int:
    """:func:`block_edge` of ``size``, halved (down to 128 px) while a block's float32
    features would exceed :data:`BLOCK_FEATURE_BYTES`; below a tile, edges divide the tile
    so that a tile is written by whole blocks."""
    edge = block_edge(size)
    while edge > 128 and edge * edge * max(1, n_features) * 4 > BLOCK_FEATURE_BYTES:
        edge = edge - TILE if edge > TILE else edge // 2
    return edge


def scene_block_edge(arr: Any, block_size: int) -> int:
    """The block edge for the lazy ``(features, y, x)`` array ``arr``:
    :func:`feature_block_edge` of ``block_size``, raised to the array's chunk edge when its
    chunks are larger (dask reads a whole chunk for any part of it: a block smaller than its
    chunks would read each chunk several times and hold it whole anyway)."""
    chunks = getattr(arr, "chunks", None)
    size = block_size
    if chunks is not None and len(chunks) == 3 and chunks[1] and chunks[2]:
        size = max(size, int(chunks[1][0]), int(chunks[2][0]))
    return feature_block_edge(size, int(arr.shape[0]))


def blocks(height: int, width: int, edge: int) -> list[Block]:
    """Square blocks of ``edge`` pixels covering the scene, row by row."""
    return [
        Block(r, c, min(edge, height - r), min(edge, width - c))
        for r in range(0, height, edge)
        for c in range(0, width, edge)
    ]


def feature_array(ds: xr.Dataset, names: list[str]) -> Any:
    """The features as one lazy ``(features, y, x)`` dask array, in ``names`` order."""
    import dask.array as da

    layers = []
    for n in names:
        data = ds[n].data
        layers.append(data if isinstance(data, da.Array) else da.from_array(data, chunks=TILE * 2))
    return da.stack(layers).astype(np.float32, copy=False)


def read_block(arr: Any, block: Block, *, pool: Any = None) -> np.ndarray:
    """One block of the lazy feature array as numpy: computed in the calling thread, or its
    layers read on the threads of ``pool`` (a ``concurrent.futures`` executor; when fewer
    blocks than cores are in flight, as with many layers, the spare cores read a block's
    layers side by side; GDAL releases the GIL)."""
    import dask.threaded
    from dask.local import get_sync

    rows, cols = block.slices
    part = arr[:, rows, cols]
    # The scheduler functions themselves, not their names: naming one makes dask import
    # dask.distributed (about 0.1 s) only to look for a client.
    if pool is not None:
        return np.asarray(part.compute(scheduler=dask.threaded.get, pool=pool))
    return np.asarray(part.compute(scheduler=get_sync))


def timed_block(predictor: Any, read: Callable[[], np.ndarray]) -> Any:
    """The predictor's result for the block ``read`` returns, with the seconds spent reading
    and tabling it and predicting it (where it runs: a thread here or a dask worker). The
    block itself is freed once tabled: the models run with its table alone in memory."""
    t0 = time.perf_counter()
    mask, table = predictor.tabulate(read())
    t1 = time.perf_counter()
    out = predictor.predict_valid(mask, table)
    out.read_seconds, out.predict_seconds = t1 - t0, time.perf_counter() - t1
    return out


def _thread_init() -> None:
    # One OpenMP/BLAS thread per worker thread: threads x library threads <= cores.
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def run_threads(
    fn: Callable[[Block], Any], todo: list[Block], *, threads: int
) -> Iterator[tuple[Block, Any]]:
    """``fn`` over the blocks on a thread pool, yielding results as they complete.

    At most ``threads + 1`` blocks are in flight, so memory is bounded by the block size.
    """
    if threads <= 1:
        for b in todo:
            yield b, fn(b)
        return
    with cf.ThreadPoolExecutor(threads, initializer=_thread_init) as pool:
        pending: dict[cf.Future[Any], Block] = {}
        it = iter(todo)
        for b in it:
            pending[pool.submit(fn, b)] = b
            if len(pending) >= threads + 1:
                break
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                b = pending.pop(fut)
                nxt = next(it, None)
                if nxt is not None:
                    pending[pool.submit(fn, nxt)] = nxt
                yield b, fut.result()


@contextlib.contextmanager
def predicted_blocks(
    predictor: Any,
    arr: Any,
    todo: list[Block],
    *,
    threads: int,
    client: Any = None,
    phases: Phases | None = None,
) -> Iterator[Iterator[tuple[Block, Any]]]:
    """The predictor's result for every block, as they complete: tasks on ``client``'s
    cluster, else ``threads`` threads here (their seconds reading and predicting added to
    ``phases``). Inside the block every member's model predicts on its block's share of the
    cores (:func:`~geoensemble.predict.models.threads_held`): one thread on a worker, the
    cores over the threads here; restored when the block ends."""
    per_block = 1 if client is not None else max(1, env_threads() // max(1, threads))
    with contextlib.ExitStack() as stack:
        stack.enter_context(threads_held([m.model for m in predictor.members], per_block))
        if client is not None:
            results = run_distributed(client, predictor, arr, todo, in_flight=4)
        else:
            # The layer reads' threads are ours and joined when the blocks end (an
            # interruption included; joined_pool says why dask's own pools are not used).
            pool = None
            if per_block > 1:
                pool = stack.enter_context(joined_pool(per_block * threads, "geoensemble-read"))
            results = run_threads(
                lambda b: timed_block(predictor, lambda: read_block(arr, b, pool=pool)),
                todo,
                threads=threads,
            )
        yield _timed(results, phases)


def _timed(
    results: Iterator[tuple[Block, Any]], phases: Phases | None
) -> Iterator[tuple[Block, Any]]:
    """``results``, their seconds reading and predicting added to ``phases`` (summed over the
    threads or workers that ran them)."""
    for b, res in results:
        if phases is not None:
            phases.add("read", res.read_seconds)
            phases.add("predict", res.predict_seconds)
        yield b, res


def run_distributed(
    client: Any,
    predictor: Any,
    arr: Any,
    todo: list[Block],
    *,
    in_flight: int,
) -> Iterator[tuple[Block, Any]]:
    """The block function as tasks on a dask.distributed cluster, results as they complete.

    Each block is ONE task: the block's own slice of the lazy feature array (its graph culled
    to the chunks it needs) is computed by the worker with dask's synchronous scheduler, then
    predicted. Submitting the slice as a dask collection instead made the client build, and
    the scheduler run, dozens of small read/stack tasks per block, which on a small machine
    cost more than the prediction itself.
    """
    from distributed import as_completed

    remote = client.scatter(predictor, broadcast=True, hash=False)
    run = uuid.uuid4().hex[:8]  # keys unique per scene: a cluster may serve several clients
    warned = False

    def task(b: Block) -> Any:
        nonlocal warned
        window = block_window(arr, b)
        if not warned:  # the first block tells: all are built alike
            warned = True
            if ships_pixels(window) and workers_elsewhere(client):
                log.warning(
                    "predict: the scene's features are in memory, not read from their "
                    "files: the client sends every block's pixels to the workers; open the "
                    "scene lazily (from its files or store) so that each worker reads its "
                    "own window",
                )
        key = f"predict-{run}-{b.row}-{b.col}"
        return client.submit(_read_apply, remote, window, pure=False, key=key)

    it = iter(todo)
    futures = {}
    for b in it:
        futures[task(b)] = b
        if len(futures) >= in_flight:
            break
    ac = as_completed(list(futures))
    for fut in ac:
        b = futures.pop(fut)
        nxt = next(it, None)
        if nxt is not None:
            new = task(nxt)
            futures[new] = nxt
            ac.add(new)
        yield b, fut.result()
        fut.release()


#: Above this size (and half the block's pixels) a block's task is taken to carry pixels
#: rather than the description of where to read them.
SHIPPED_BYTES = 1 << 16


def block_window(arr: Any, block: Block) -> _Lazy:
    """What a worker needs to read ``block`` itself: the block's slice of the lazy feature
    array, its graph culled to the chunks it needs. For a scene opened from files (a local
    path or a URL) or a store, that graph holds the readers (source, window, how to turn the
    values into features), not pixels: the task is a few kilobytes, whatever the block."""
    import dask

    rows, cols = block.slices
    (lazy,) = dask.optimize(arr[:, rows, cols])
    return _Lazy(lazy)


def task_bytes(window: _Lazy) -> int:
    """Bytes ``window`` weighs as a task's argument (pickled): a few kilobytes when the block
    is read from its source by the task, the block's pixels and more when it is in memory."""
    import pickle

    return len(pickle.dumps(window, protocol=5))


def workers_elsewhere(client: Any) -> bool:
    """Whether some worker runs in another process, so a task's argument is pickled and sent
    (workers in this process, ``LocalCluster(processes=False)``, share its memory)."""
    import os

    return any(pid != os.getpid() for pid in client.run(os.getpid).values())


def ships_pixels(window: _Lazy) -> bool:
    """Whether ``window`` carries its pixels rather than where to read them."""
    size = task_bytes(window)
    return size > SHIPPED_BYTES and size >= window.array.nbytes // 2


@dataclass(frozen=True)
class _Lazy:
    """A lazy block passed to a task as a plain object (distributed would otherwise turn a
    dask collection argument into tasks of its graph)."""

    array: Any


def _read_apply(predictor: Any, lazy: _Lazy) -> Any:
    from dask.local import get_sync

    return timed_block(
        predictor,
        lambda: np.asarray(lazy.array.compute(scheduler=get_sync), dtype=np.float32),
    )


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op
    elsewhere). Reading and predicting on threads leaves freed memory in per-thread arenas,
    which would otherwise add to the peak of every later step (measured: ~150 MB at 21 Mpx).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if not name:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)
