"""Retrain the demo world's shipped models from scratch: `python scripts/demo_models.py clip`, then
`... generator`; choose the prompt-training recipe on the source domain: `python scripts/demo_models.py recipe`.
A command-line tool over the library `pipeline.demo`, kept out of it (the library never imports stages/)."""

import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages._cli import stage  # noqa: E402

app = typer.Typer(add_completion=False)


@app.callback()
def main() -> None:
    """Retrain the demo world's shipped models from scratch, with fixed seeds."""


@app.command()
def clip(out: Path = typer.Option(Path("data/demo/demo-clip.safetensors")), steps: int = 1200,
         images: int = 48_000, batch_size: int = 256, seed: int = 0) -> None:
    """Contrastive pretraining of the tiny demo CLIP on captioned source-domain images."""
    from pipeline.demo.pretrain_clip import pretrain

    with stage("pretrain-clip"):
        pretrain(out, n_images=images, steps=steps, batch_size=batch_size, seed=seed)


@app.command()
def generator(clip_file: Path = typer.Option(Path("data/demo/demo-clip.safetensors"), "--clip"),
              steps: int = 9000, images: int = 48_000, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
              fidelity_per_class: int = 10, sample_steps: int = 25, guidance: float = 3.0) -> None:
    """Train the demo text-to-image UNet on source images, conditioned on the demo CLIP; report its
    class fidelity (share of "a photo of a {c}" images the CLIP assigns to c)."""
    import torch

    from pipeline.clip.models import load_clip
    from pipeline.demo import world
    from pipeline.demo.generator import DemoPipeline, class_fidelity, train
    from pipeline.demo.pretrain_clip import render_corpus

    with stage("pretrain-generator") as log:
        pixels, captions, _ = render_corpus(images, seed + 7)
        report = train(clip_file, pixels, captions, steps, batch_size=batch_size, lr=lr, seed=seed)
        device = torch.device("cpu")
        pipe = DemoPipeline.from_dir(clip_file.parent, device)
        clip = load_clip("demo-clip", str(clip_file), device)
        report["class_fidelity"], _ = class_fidelity(pipe, clip, world.class_names(), fidelity_per_class,
                                                     sample_steps, guidance)
        log.info("demo generator: %s", report)


@app.command()
def recipe(params_file: Path = typer.Option(Path("params.yaml"), "--params"),
           clip_file: Path = typer.Option(Path("data/demo/demo-clip.safetensors"), "--clip"),
           out: Path = typer.Option(Path("results/recipe_search.csv")), noise: float = 0.5,
           seeds: int = 1) -> None:
    """Score prompt-training recipes on a labelled source split of the demo world (never the target),
    starting from the context in params.yaml, and print the one to put under `train` there."""
    from pipeline.clip.models import load_clip
    from pipeline.config.params import load_params
    from pipeline.core.artifacts import atomic_path
    from pipeline.demo.recipe import search
    from pipeline.runtime.devices import resolve_device

    with stage("recipe") as log:
        base = load_params(params_file).train
        device = resolve_device(base.device, "train.device")
        table, chosen = search(load_clip("demo-clip", str(clip_file), device), base, device,
                               seeds=tuple(range(seeds)), noise=noise)
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
        log.info("recipes by held-out source accuracy (%s):\n%s", out, table.to_string(index=False))
        log.info("chosen: optimizer=%s lr=%s epochs=%d batch_size=%d", chosen.optimizer, chosen.lr, chosen.epochs,
                 chosen.batch_size)


if __name__ == "__main__":
    app()
