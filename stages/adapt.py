"""adapt: LoRA-adapt the generator to the target domain on the unlabeled training images (AiR's key step).

Disabled (`adapt.enabled: false`), or for a method that reads no synthetic images (as `check` recorded
in `generator.json`), it writes only `adapter.json` saying so and trains nothing. Enabled, it first makes
the unadapted generator's class sample (`data/adapter/prior`: prior preservation, and `diagnose`'s
fidelity baseline; `pipeline.diffusion.adapt.adaptation_images`)."""

import shutil
from pathlib import Path

import typer
from dvclive import Live

from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import write_json
from pipeline.core.inputs import reads_synthetic_images
from pipeline.diffusion.adapt import adapt_generator, adaptation_images
from pipeline.diffusion.loading import load_generator
from pipeline.diffusion.lora import install_adapter
from pipeline.runtime.devices import resolve_device, resolve_dtype
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
            data, prior = adaptation_images(params)
            device = resolve_device(settings.device, "adapt.device")
            pipe = load_generator(params.generate.model, device, resolve_dtype(params.generate.dtype, device))

            def on_step(step: int, loss: float) -> None:
                live.log_metric("loss", loss)
                live.next_step()

            state = adapt_generator(pipe, data, settings, device, on_step, prior=prior)  # it logs its time
        install_adapter(state, paths.ADAPTER)
        write_json(paths.ADAPTER_INFO, {"enabled": True, "captions": settings.captions, "images": len(data),
                                        "caption_accuracy": data.true_accuracy, "prior_images": len(prior),
                                        "prior_weight": settings.prior_weight})


if __name__ == "__main__":
    app()
