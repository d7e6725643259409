"""features: encode real images, synthetic images and class prompts with a frozen open_clip model."""

from pathlib import Path

import numpy as np
import pandas as pd
import typer

from pipeline import paths
from pipeline.artifacts import read_json, read_table, write_table
from pipeline.devices import resolve_device
from pipeline.features import encode_images, encode_prompts
from pipeline.generation import read_synthetic
from pipeline.models import load_clip
from pipeline.params import load_params
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("features") as log:
        params = load_params(params_file)
        device = resolve_device(params.clip.device, "clip.device")
        clip = load_clip(params.clip.arch, params.clip.pretrained, device)
        class_names = read_json(paths.CLASSES)
        manifest, _ = read_table(paths.MANIFEST, columns=["id", "path", "image", "label"])
        synthetic = read_synthetic(paths.SYNTHETIC)
        log.info("encoding %d real and %d synthetic images with %s (%s)", len(manifest), len(synthetic),
                 params.clip.arch, params.clip.pretrained)
        options = dict(batch_size=params.clip.batch_size, num_workers=params.clip.num_workers, device=device)
        real = encode_images(clip, manifest, desc="real images", **options)
        fake = encode_images(clip, synthetic, desc="synthetic images", **options)
        frame = pd.concat([
            pd.DataFrame({"id": manifest["id"], "source": "real", "label": manifest["label"].astype("int64")}),
            pd.DataFrame({"id": synthetic["id"], "source": "synthetic", "label": synthetic["label"].astype("int64")}),
        ], ignore_index=True)
        metadata = {"arch": params.clip.arch, "pretrained": params.clip.pretrained}
        write_table(paths.IMAGE_FEATURES, frame, np.concatenate([real, fake]), metadata)
        text, text_embeddings = encode_prompts(clip, params.clip.templates, class_names, device)
        write_table(paths.TEXT_FEATURES, text, text_embeddings, metadata)


if __name__ == "__main__":
    app()
