"""features: encode images and class prompts with a frozen open_clip model, once each.

Two commands, so the DAG stays acyclic: `real` (target images and class prompts, which `adapt` needs
for pseudo-label captions) runs before generation, `synthetic` after it.
"""

from pathlib import Path

import pandas as pd
import typer

from pipeline import paths
from pipeline.artifacts import read_json, read_table, write_table
from pipeline.devices import resolve_device
from pipeline.features import encode_images, encode_prompts
from pipeline.generation import read_planned_synthetic
from pipeline.models import load_clip
from pipeline.params import load_params
from stages._cli import stage

app = typer.Typer(add_completion=False)


def _clip(params):
    device = resolve_device(params.clip.device, "clip.device")
    options = dict(batch_size=params.clip.batch_size, num_workers=params.clip.num_workers, device=device)
    metadata = {"arch": params.clip.arch, "pretrained": params.clip.pretrained}
    return load_clip(params.clip.arch, params.clip.pretrained, device), options, metadata


def _write_images(path: Path, frame: pd.DataFrame, clip, options: dict, metadata: dict, desc: str) -> None:
    embeddings = encode_images(clip, frame, desc=desc, **options)
    table = pd.DataFrame({"id": frame["id"].to_numpy(), "label": frame["label"].astype("int64").to_numpy()})
    write_table(path, table, embeddings, metadata)


@app.command()
def real(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The target images of every split and one embedding per (class, template)."""
    with stage("features real") as log:
        params = load_params(params_file)
        clip, options, metadata = _clip(params)
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "path", "image", "label"])
        log.info("encoding %d real images with %s (%s)", len(manifest), params.clip.arch, params.clip.pretrained)
        _write_images(paths.IMAGE_FEATURES, manifest, clip, options, metadata, "real images")
        text, text_embeddings = encode_prompts(clip, params.clip.templates, read_json(paths.CLASSES), options["device"])
        write_table(paths.TEXT_FEATURES, text, text_embeddings, metadata)


@app.command()
def synthetic(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The generated class images."""
    with stage("features synthetic") as log:
        params = load_params(params_file)
        clip, options, metadata = _clip(params)
        frame = read_planned_synthetic(paths.SYNTHETIC, params.generate, read_json(paths.CLASSES))
        log.info("encoding %d synthetic images with %s (%s)", len(frame), params.clip.arch, params.clip.pretrained)
        _write_images(paths.SYNTHETIC_FEATURES, frame, clip, options, metadata, "synthetic images")


if __name__ == "__main__":
    app()
