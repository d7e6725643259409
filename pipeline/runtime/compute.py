"""Where shards of work run: in this process, in one process per GPU, or as Ray tasks on a cluster.

Generation and feature extraction are cut into deterministic shards (`pipeline.generation`,
`pipeline.clip.features`); this module only decides where a shard's function runs and hands its result
back to the caller, who writes it atomically into the cache. Results travel back (through Ray's
object store, or a process pool's pipe), so a cluster needs no shared filesystem, and a shard is on
disk only once it is whole: a killed run, or a task Ray retries, never leaves half a shard behind.

`compute.*` decides only where work runs, never what it produces (per-image seeds, fixed shards and
batches), so those keys are not DVC params of any stage: switching backend re-runs nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from pipeline.config.params import ComputeParams
from pipeline.core.errors import PipelineError
from pipeline.runtime.devices import resolve_device, visible_gpus

log = logging.getLogger(__name__)

# Test hook: "<shard index>:<marker file>" kills the Ray worker running that shard once (the marker
# records that it happened), so a test can watch Ray retry the task and the result stay identical.
KILL_WORKER_ONCE = "PIPELINE_KILL_WORKER_ONCE"

_in_worker = False                       # True in pool / Ray worker processes
_loaded: tuple[object, object] | None = None  # (identity, model): the last model this worker loaded


class ShardWork(Protocol):
    """A picklable callable that turns one shard's items into its result. `report(n)` (in-process
    runs only) advances the progress bar by n items while the shard is under way.
    `single_threaded_on_cpu`: its CPU shards run on one torch thread each (so their bytes do not
    depend on the thread count), and a CPU machine runs one such process per core it may use."""

    single_threaded_on_cpu: bool

    def __call__(self, items: list, report: Callable[[int], None] | None) -> object: ...


def worker_model(identity: object, load: Callable[[], object]) -> object:
    """`load()`, kept for the next shard when this is a worker process, so a worker that runs many
    shards loads its model once (Ray reuses worker processes). The driver keeps nothing here: a run's
    work object holds its own model, and the next run loads afresh."""
    global _loaded
    if not _in_worker:
        return load()
    if _loaded is None or _loaded[0] != identity:
        _loaded = None  # drop the old model before loading the next
        _loaded = (identity, load())
    return _loaded[1]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def execution_device(compute: ComputeParams | None, device: str, key: str) -> torch.device:
    """The kind of device the shards will run on, which decides their dtype and so their cache key.
    Locally it is `device` resolved here; on Ray, `auto`/`cuda` mean a GPU when the cluster has one,
    whatever the driver has (the driver may well be a CPU-only login node)."""
    if compute is None or compute.backend == "local":
        return resolve_device(device, key)
    if device != "auto" and not device.startswith("cuda"):
        return resolve_device(device, key)
    _connect(compute)
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus == 0 and device != "auto":
        raise PipelineError(f"{key}={device!r} but the Ray cluster has no GPU; set {key}: auto or cpu")
    return torch.device("cuda" if gpus else "cpu")  # unnumbered: a task sees only the GPU Ray gave it


def run_shards(work: ShardWork, shards: dict[int, list], compute: ComputeParams | None, device: torch.device,
               report: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    """Run `work` on every shard and yield `(index, result)` as shards finish, in any order.
    `compute=None` (library use, tests): one after another in this process."""
    if not shards:
        return
    if compute is not None and compute.backend == "ray":
        yield from _on_ray(work, shards, compute, device, report)
        return
    workers = 1 if compute is None else _local_workers(compute, device, work.single_threaded_on_cpu)
    if workers == 1:
        for index, items in shards.items():
            yield index, work(items, report)
        return
    yield from _in_process_pool(work, shards, workers, device, report)


# --- local: this process, or one process per GPU -------------------------------------------------

def _local_workers(compute: ComputeParams, device: torch.device, single_threaded: bool) -> int:
    """null = one per visible GPU when the work is on an unnumbered CUDA device; on CPU, one per
    thread this stage may use for single-threaded work, else one (it threads itself)."""
    if compute.workers is not None:
        if device.type == "cuda" and device.index is not None and compute.workers > 1:
            raise PipelineError(f"compute.workers={compute.workers} but the device is pinned to {device}; "
                                "set the device to auto (one worker per visible GPU) or compute.workers: 1")
        return compute.workers
    if device.type == "cuda" and device.index is None:
        return max(1, len(visible_gpus()))
    if device.type == "cpu" and single_threaded:
        return torch.get_num_threads()  # the stage's share of the cores (pipeline.runtime.devices.CoreShare)
    return 1


def _pin_worker(slots, threads: int) -> None:
    """Pool initialiser: one GPU per process (before CUDA starts in it) and its share of the cores."""
    global _in_worker
    _in_worker = True
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    torch.set_num_threads(threads)


def _call(work: ShardWork, items: list) -> object:
    return work(items, None)


def _in_process_pool(work: ShardWork, shards: dict[int, list], workers: int, device: torch.device,
                     report: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    context = multiprocessing.get_context("spawn")  # CUDA cannot cross a fork
    slots = context.Queue()
    gpus = visible_gpus() if device.type == "cuda" else []
    for worker in range(workers):
        slots.put(gpus[worker % len(gpus)] if gpus else None)
    threads = max(1, _cores() // workers)
    log.info("local: %d worker processes (%s), %d torch threads each", workers,
             f"GPUs {', '.join(gpus)}" if gpus else "CPU", threads)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_pin_worker,
                             initargs=(slots, threads)) as pool:
        futures = {pool.submit(_call, work, items): index for index, items in shards.items()}
        try:
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise PipelineError(f"a worker process died while making shard {index} (out of memory?). "
                                        "Finished shards are kept in the cache: run again, with fewer "
                                        "compute.workers if memory is short") from None
                report(len(shards[index]))
                yield index, result
        finally:
            for future in futures:
                future.cancel()


# --- ray: tasks on an existing cluster, or a local one started here ------------------------------

def _connect(compute: ComputeParams) -> None:
    """Join the cluster at `compute.ray_address`; `auto` joins a running one (RAY_ADDRESS, or one
    started with `ray start --head` on this machine) and otherwise starts a local Ray in this process."""
    try:
        import ray
    except ImportError:
        raise PipelineError("compute.backend=ray needs Ray: pip install 'ray>=2.9' (it is a dependency of this "
                            "package; reinstall it with pip install -e .)") from None
    if ray.is_initialized():
        return
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    address = compute.ray_address
    if address in ("auto", "local"):
        if address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False, configure_logging=False)
                log.info("ray: joined the running cluster (%s)", ray.cluster_resources())
                return
            except ConnectionError:
                log.info("ray: no running cluster found; starting a local one in this process")
        ray.init(num_cpus=_cores(), **quiet)
        return
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as error:
        raise PipelineError(f"cannot join the Ray cluster at compute.ray_address={address!r}: {error}. Start it "
                            "(ray start --head) or set compute.ray_address: auto for a local one") from None
    log.info("ray: joined %s (%s)", address, ray.cluster_resources())


def _on_ray(work: ShardWork, shards: dict[int, list], compute: ComputeParams, device: torch.device,
            report: Callable[[int], None]) -> Iterator[tuple[int, object]]:
    import ray

    _connect(compute)
    cpus = ray.cluster_resources().get("CPU", 1)
    if device.type == "cuda":
        resources = dict(num_gpus=1, num_cpus=1)
    else:  # CPU work: each task gets its share of the cores, and torch uses exactly that many threads
        workers = compute.workers or 1
        resources = dict(num_gpus=0, num_cpus=max(1, int(cpus // workers)))
    task = ray.remote(max_retries=compute.max_retries, retry_exceptions=[RuntimeError, OSError],
                      **resources)(_ray_task)
    fault = os.environ.get(KILL_WORKER_ONCE)
    pending = {task.remote(work, items, index, fault): index for index, items in shards.items()}
    log.info("ray: %d shard tasks (%s each)", len(pending), resources)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, PipelineError):
                    raise cause from None
                raise PipelineError(
                    f"shard {index} failed on Ray after {compute.max_retries} retries ({type(error).__name__}: "
                    f"{str(error).strip().splitlines()[0][:300]}). Finished shards are kept in the cache: run "
                    "again to make only the missing ones (raise compute.max_retries for flaky nodes)") from None
            report(len(shards[index]))
            yield index, result
    finally:
        for ref in pending:  # a failed or interrupted run stops its queued work
            ray.cancel(ref, force=True)


def _ray_task(work: ShardWork, items: list, index: int, fault: str | None) -> object:
    import ray

    global _in_worker
    _in_worker = True
    if fault:
        wanted, marker = fault.split(":", 1)
        if int(wanted) == index and not Path(marker).exists():
            Path(marker).touch()
            os._exit(1)  # the worker process dies mid-task, as a preempted node would
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return work(items, None)
