"""Where shards run (pipeline/runtime/compute.py): the same bytes in this process, in worker processes and as Ray
tasks, whatever the order shards finish in and even when a worker dies mid-shard."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.clip.features import encode_image_shards
from pipeline.config.params import ClipParams, ComputeParams, DatasetParams, GenerateParams, WorldParams
from pipeline.core.errors import PipelineError
from pipeline.datasets.loading import load_dataset
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.synthetic import read_synthetic
from pipeline.runtime import compute
from pipeline.runtime.compute import KILL_WORKER_ONCE, run_shards
from pipeline.runtime.devices import gpu_lease, visible_gpus

CLASSES = ["cat", "dog", "red car"]
CPU = torch.device("cpu")


def _params(cache: Path) -> GenerateParams:
    return GenerateParams(model="tiny-random", images_per_class=5, templates=["a photo of a {}", "a drawing of a {}"],
                          size=32, steps=2, guidance=3.0, batch_size=4, shard_size=4, dtype="float32", device="cpu",
                          cache_dir=str(cache))


def _shards(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("shard-*.parquet"))}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local two-CPU Ray for the module (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    import sys

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, bytes]:
    """The reference: every shard made one after another in this process."""
    root = tmp_path_factory.mktemp("local")
    generate_synthetic(_params(root / "cache"), CLASSES, seed=0, out_dir=root / "out", progress=False)
    return _shards(root / "out")


class Probe:
    """Work that reports where it ran: process, torch threads, the GPU it was given."""

    single_threaded_on_cpu = True

    def __call__(self, items, report):
        return os.getpid(), torch.get_num_threads(), os.environ.get("CUDA_VISIBLE_DEVICES"), list(items)


def test_ray_with_two_workers_and_a_killed_one_gives_the_local_bytes(tmp_path, in_process, ray_cluster, monkeypatch):
    assert len(in_process) == 4  # 15 images in shards of 4
    ray_compute = ComputeParams(backend="ray", workers=2, max_retries=2)
    generate_synthetic(_params(tmp_path / "cache"), CLASSES, seed=0, out_dir=tmp_path / "ray", progress=False,
                       compute=ray_compute)
    assert _shards(tmp_path / "ray") == in_process

    # A worker process dies in the middle of shard 2 (as on a preempted node): Ray runs the task again.
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_WORKER_ONCE, f"2:{marker}")
    generate_synthetic(_params(tmp_path / "cache-killed"), CLASSES, seed=0, out_dir=tmp_path / "killed-run",
                       progress=False, compute=ray_compute)
    assert marker.exists()  # the kill happened
    assert _shards(tmp_path / "killed-run") == in_process


def test_a_run_that_loses_its_worker_without_retries_keeps_its_finished_shards(tmp_path, in_process, ray_cluster,
                                                                               monkeypatch):
    """No retries left: the run fails with a message (not a traceback), every shard that finished is in
    the cache, whole, and the rerun makes only the missing ones."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(KILL_WORKER_ONCE, f"3:{tmp_path / 'killed'}")
    with pytest.raises(PipelineError, match="shard 3 failed on Ray after 0 retries.*run again"):
        generate_synthetic(_params(cache), CLASSES, seed=0, out_dir=tmp_path / "out", progress=False,
                           compute=ComputeParams(backend="ray", workers=1, max_retries=0))
    (key,) = cache.iterdir()
    kept = sorted(p.name for p in key.glob("*.parquet"))
    assert "shard-00003.parquet" not in kept and not list(key.glob(".shard-*.tmp"))
    summary = generate_synthetic(_params(cache), CLASSES, seed=0, out_dir=tmp_path / "out", progress=False,
                                 compute=ComputeParams(backend="ray", workers=1, max_retries=0))
    assert summary.loc[summary["from_cache"], "shard"].tolist() == kept
    assert _shards(tmp_path / "out") == in_process


def test_local_worker_processes_give_the_same_bytes_and_split_the_cores(tmp_path, in_process):
    generate_synthetic(_params(tmp_path / "cache"), CLASSES, seed=0, out_dir=tmp_path / "out", progress=False,
                       compute=ComputeParams(workers=2))
    assert _shards(tmp_path / "out") == in_process
    assert len(read_synthetic(tmp_path / "out")) == 15

    # Each of two processes gets half the cores (so parallel runs never oversubscribe them).
    cores = len(os.sched_getaffinity(0))
    results = dict(run_shards(Probe(), {0: ["a"], 1: ["b"], 2: ["c"]}, ComputeParams(workers=2), CPU, lambda n: None))
    assert sorted(results) == [0, 1, 2] and [results[i][3] for i in range(3)] == [["a"], ["b"], ["c"]]
    assert {threads for _, threads, _, _ in results.values()} == {max(1, cores // 2)}
    assert all(pid != os.getpid() for pid, _, _, _ in results.values())


def test_ray_cpu_tasks_use_their_share_of_the_cluster(ray_cluster):
    results = dict(run_shards(Probe(), {0: ["a"], 1: ["b"]}, ComputeParams(backend="ray", workers=2), CPU,
                              lambda n: None))
    assert [results[i][1] for i in (0, 1)] == [1, 1]  # 2 cluster CPUs / 2 workers
    results = dict(run_shards(Probe(), {0: ["a"]}, ComputeParams(backend="ray", workers=1), CPU, lambda n: None))
    assert results[0][1] == 2


def test_local_workers_default_to_the_stage_share_for_cpu_generation_and_one_otherwise():
    assert compute._local_workers(ComputeParams(), CPU, single_threaded=True) == torch.get_num_threads()
    assert compute._local_workers(ComputeParams(), CPU, single_threaded=False) == 1
    assert compute._local_workers(ComputeParams(workers=3), CPU, single_threaded=False) == 3
    with pytest.raises(Exception, match="pinned to cuda:1"):
        compute._local_workers(ComputeParams(workers=2), torch.device("cuda", 1), single_threaded=True)


def test_feature_shards_are_cached_resumed_and_match_on_ray(tmp_path, ray_cluster, caplog, monkeypatch):
    world = load_dataset(DatasetParams(name="demo", demo=WorldParams(images_per_class=3, test_images_per_class=1)))
    frame = world.frame.reset_index(drop=True)
    clip = ClipParams(arch="tiny-clip", pretrained="random", batch_size=8, num_workers=0)
    monkeypatch.setattr("pipeline.clip.features.SHARD_TARGET", 16)  # 96 images: 6 shards of 2 batches
    whole = encode_image_shards(frame, clip, CPU, tmp_path / "a")
    assert whole.shape == (len(frame), 32) and np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5)
    assert len(list((tmp_path / "a").glob("*.safetensors"))) == 6

    # A killed run: two shards are gone; the rerun encodes only those and returns the same matrix.
    for path in sorted((tmp_path / "a").glob("*.safetensors"))[:2]:
        path.unlink()
    with caplog.at_level(logging.INFO, logger="pipeline.clip.features"):
        again = encode_image_shards(frame, clip, CPU, tmp_path / "a")
    assert "2 of 6 shards encoded" in caplog.text
    assert np.array_equal(again, whole)

    on_ray = encode_image_shards(frame, clip, CPU, tmp_path / "b", ComputeParams(backend="ray", workers=2))
    assert np.abs(on_ray - whole).max() < 1e-5  # one CPU thread per task vs this process's: summation order
    changed = frame.assign(image=[frame["image"][1], *frame["image"][1:]])  # image 0 replaced by image 1
    encode_image_shards(changed, clip, CPU, tmp_path / "a")
    assert len(list((tmp_path / "a").glob("*.safetensors"))) == 7  # only the first shard is new

    # New encoding code (or torch, open_clip) may move the floats: no shard from before is served.
    monkeypatch.setattr("pipeline.clip.features._code_identity", lambda: "other code")
    encode_image_shards(frame, clip, CPU, tmp_path / "a")
    assert len(list((tmp_path / "a").glob("*.safetensors"))) == 13


def test_gpu_lease_gives_each_running_stage_the_least_used_gpu(tmp_path, monkeypatch):
    """`dvc queue start -j N` on N GPUs: each stage process takes the GPU the fewest stages hold."""
    registry = tmp_path / "gpus"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    (registry).mkdir()
    (registry / "2.99999-dead.lock").touch()  # a killed stage's file: nobody holds it
    with gpu_lease(registry) as first:
        assert first == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
        with gpu_lease(registry, ["2", "3"]) as second, gpu_lease(registry, ["2", "3"]) as third:
            assert (second, third) == ("3", "2")
        with gpu_lease(registry, ["2", "3"]) as fourth:
            assert fourth == "3"  # the second and third gave theirs back
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2, 3" and not list(registry.glob("*.lock"))

    with gpu_lease(registry, ["0"]) as only:  # one GPU (or none): nothing to spread
        assert only is None and os.environ["CUDA_VISIBLE_DEVICES"] == "2, 3"
    monkeypatch.setenv("PIPELINE_GPU_LEASE", "0")
    with gpu_lease(registry, ["0", "1"]) as off:
        assert off is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
