"""adapt: LoRA-adapt the generator to the target domain on the unlabeled training images (AiR's key step).

Disabled (`adapt.enabled: false`), it writes only `adapter.json` saying so, and `generate` runs the
generator as it is, with the same cache key as if this stage did not exist. For a method that reads no
synthetic images (`Method.reads_synthetic_images`) it writes the same file, marked `unused`, and trains
nothing; `check` records that decision in `generator.json`, so switching back to AiR finds DVC's run cache.

Enabled, it first makes `adapt.prior_images_per_class` class images per class with the unadapted
generator (`data/adapter/prior`, the first images an unadapted `generate` would make): the class set of
prior preservation (`adapt.prior_weight`), and what `diagnose` compares the adapted images' class
fidelity with.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import typer
from dvclive import Live

from pipeline.core import paths
from pipeline.diffusion.adapt import adapt_generator, prior_images, target_training_images
from pipeline.diffusion.lora import LORA_FILE, save_adapter
from pipeline.core.artifacts import read_json, read_table, write_json
from pipeline.runtime.devices import resolve_device, resolve_dtype
from pipeline.diffusion.generate import generate_synthetic
from pipeline.diffusion.loading import load_generator
from pipeline.diffusion.synthetic import read_synthetic
from pipeline.core.inputs import reads_synthetic_images
from pipeline.config.params import load_params
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("adapt") as log:
        params = load_params(params_file)
        settings = params.adapt
        shutil.rmtree(paths.ADAPTER, ignore_errors=True)
        with Live(str(paths.ADAPT_LIVE), save_dvc_exp=False, dvcyaml=None) as live:
            unused = not reads_synthetic_images()  # whatever adapt.enabled says: one marker for all
            if unused or not settings.enabled:
                live.log_metric("loss", float("nan"))
                write_json(paths.ADAPTER_INFO, {"enabled": False, "unused": True} if unused else {"enabled": False})
                log.info(f"method {params.method} reads no synthetic images: nothing to adapt" if unused else
                         "adapt.enabled is false: generating with the generator as it is")
                return
            paths.ADAPTER.parent.mkdir(parents=True, exist_ok=True)
            manifest, _ = read_table(paths.MANIFEST, columns=["id", "split", "path", "image"])
            workspace = load_workspace(with_synthetic=False) if settings.captions == "pseudolabel" else None
            data = target_training_images(params, manifest, workspace)
            log.info("adapting %s on %d target training images (%s captions)", params.generate.model, len(data),
                     settings.captions)
            generate_synthetic(params.prior_sample_plan(), read_json(paths.CLASSES), params.generate.seed, paths.ADAPTER_PRIOR,
                               compute=params.compute)
            prior = prior_images(read_synthetic(paths.ADAPTER_PRIOR))
            if settings.prior_weight > 0:
                log.info("prior preservation: %d unadapted class images at weight %g", len(prior),
                         settings.prior_weight)
            device = resolve_device(settings.device, "adapt.device")
            pipe = load_generator(params.generate.model, device, resolve_dtype(params.generate.dtype, device))

            def on_step(step: int, loss: float) -> None:
                live.log_metric("loss", loss)
                live.next_step()

            started = time.perf_counter()
            state = adapt_generator(pipe, data, settings, device, on_step, prior=prior)
            seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory(dir=paths.ADAPTER.parent) as scratch:  # a crash leaves no half-written file
            paths.ADAPTER.mkdir(parents=True, exist_ok=True)
            os.replace(save_adapter(state, Path(scratch)), paths.ADAPTER / LORA_FILE)
        log.info("adapter trained in %.1f s", seconds)
        write_json(paths.ADAPTER_INFO, {"enabled": True, "captions": settings.captions, "images": len(data),
                                        "caption_accuracy": data.true_accuracy, "prior_images": len(prior),
                                        "prior_weight": settings.prior_weight})


if __name__ == "__main__":
    app()
