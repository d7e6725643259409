"""features: encode images and class prompts with a frozen open_clip model, once each.

Two commands, so the DAG stays acyclic: `real` (target images and class prompts, which `adapt` needs
for pseudo-label captions) runs before generation, `synthetic` after it.
"""

from pathlib import Path

import pandas as pd
import typer

from pipeline.core import paths
from pipeline.core.artifacts import read_json, read_table, write_table
from pipeline.runtime.compute import execution_device
from pipeline.runtime.devices import resolve_device
from pipeline.clip.features import encode_image_shards, encode_prompts
from pipeline.diffusion.synthetic import read_planned_synthetic, read_synthetic
from pipeline.clip.models import load_clip
from pipeline.core.inputs import reads_synthetic_images
from pipeline.config.params import load_params
from pipeline.core.paths import shared_root
from stages._cli import stage

FEATURE_CACHE = Path(".cache/features")  # per-shard embeddings, shared by queued experiments

app = typer.Typer(add_completion=False)


def _metadata(params) -> dict:
    return {"arch": params.clip.arch, "pretrained": params.clip.pretrained}


def _write_images(path: Path, frame: pd.DataFrame, params, desc: str) -> None:
    """Encode `frame` shard by shard (cached in .cache/features, run where compute.* says) into `path`."""
    device = execution_device(params.compute, params.clip.device, "clip.device")
    embeddings = encode_image_shards(frame, params.clip, device, shared_root() / FEATURE_CACHE, params.compute, desc)
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": frame["label"].astype("int64").to_numpy()})
    write_table(path, table, embeddings, _metadata(params))


@app.command()
def real(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The target images of every split and one embedding per (class, template)."""
    with stage("features real", all_gpus=True) as log:
        params = load_params(params_file)
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "path", "image", "label"])
        log.info("encoding %d real images with %s (%s)", len(manifest), params.clip.arch, params.clip.pretrained)
        _write_images(paths.IMAGE_FEATURES, manifest, params, "real images")
        device = resolve_device(params.clip.device, "clip.device")
        clip = load_clip(params.clip.arch, params.clip.pretrained, device)
        text, text_embeddings = encode_prompts(clip, params.clip.templates, read_json(paths.CLASSES), device)
        write_table(paths.TEXT_FEATURES, text, text_embeddings, _metadata(params))


@app.command()
def synthetic(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The generated class images, and the unadapted generator's sample `adapt` made (none when it
    trained no adapter)."""
    with stage("features synthetic", all_gpus=True) as log:
        params = load_params(params_file)
        frame = read_planned_synthetic(paths.SYNTHETIC, params.synthetic_plan(reads_synthetic_images()), read_json(paths.CLASSES))
        log.info("encoding %d synthetic images with %s (%s)", len(frame), params.clip.arch, params.clip.pretrained)
        _write_images(paths.SYNTHETIC_FEATURES, frame, params, "synthetic images")
        _write_images(paths.PRIOR_FEATURES, read_synthetic(paths.ADAPTER_PRIOR), params, "unadapted sample")


if __name__ == "__main__":
    app()
