"""features: encode images and class prompts with a frozen open_clip model, once each.

Two commands, so the DAG stays acyclic: `real` (target images and class prompts, which `adapt` needs
for pseudo-label captions) runs before generation, `synthetic` after it.
"""

from pathlib import Path

import typer

from pipeline.clip.features import encode_prompts, feature_metadata, write_image_features
from pipeline.clip.models import load_clip
from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import read_json, read_table, write_table
from pipeline.core.inputs import reads_synthetic_images
from pipeline.diffusion.synthetic import read_planned_synthetic, read_synthetic
from pipeline.runtime.devices import resolve_device
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def real(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The target images of every split and one embedding per (class, template)."""
    with stage("features real", all_gpus=True) as log:
        params = load_params(params_file)
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "path", "image", "label"])
        log.info("encoding %d real images with %s (%s)", len(manifest), params.clip.arch, params.clip.pretrained)
        write_image_features(paths.IMAGE_FEATURES, manifest, params, "real images")
        device = resolve_device(params.clip.device, "clip.device")
        clip = load_clip(params.clip.arch, params.clip.pretrained, device)
        text, text_embeddings = encode_prompts(clip, params.clip.templates, read_json(paths.CLASSES), device)
        write_table(paths.TEXT_FEATURES, text, text_embeddings, feature_metadata(params))


@app.command()
def synthetic(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    """The generated class images, and the unadapted generator's sample `adapt` made (none when it
    trained no adapter)."""
    with stage("features synthetic", all_gpus=True) as log:
        params = load_params(params_file)
        frame = read_planned_synthetic(paths.SYNTHETIC, params.synthetic_plan(reads_synthetic_images()), read_json(paths.CLASSES))
        log.info("encoding %d synthetic images with %s (%s)", len(frame), params.clip.arch, params.clip.pretrained)
        write_image_features(paths.SYNTHETIC_FEATURES, frame, params, "synthetic images")
        write_image_features(paths.PRIOR_FEATURES, read_synthetic(paths.ADAPTER_PRIOR), params, "unadapted sample")


if __name__ == "__main__":
    app()
