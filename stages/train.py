"""train: the method's rounds of prompt learning and the prompt ensemble: text prompts on cached
features, or (visual / multimodal prompts, adapter, full fine-tuning) on the pixel cache, resumable."""

from pathlib import Path

import typer
from dvclive import Live

from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.methods.catalog import build_method
from pipeline.pseudolabel.store import read_pseudo_labels
from pipeline.runtime.devices import resolve_device
from pipeline.training.loop import run_ensemble
from pipeline.training.outputs import save_training_outputs
from pipeline.training.setup import prepare_training
from pipeline.workspace import load_workspace, training_pool
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("train"):
        params = load_params(params_file)
        method = build_method(params)
        device = resolve_device(params.train.device, "train.device")
        workspace = load_workspace()
        pool = training_pool(workspace, params.paradigm, with_prototypes=method.needs_prototypes,
                             with_candidate_sets=method.needs_candidate_sets)
        pool_ids = workspace.manifest.loc[workspace.split("train"), "id"].to_numpy()
        first_round = read_pseudo_labels(pool_ids, len(workspace.class_names))
        setup = prepare_training(params, method, workspace, pool, device)

        with Live(str(paths.TRAIN_LIVE), save_dvc_exp=False, dvcyaml=None) as live:
            def on_epoch(member: int, round_index: int, epoch: int, loss: float) -> None:
                live.log_metric("member", member, plot=False)
                live.log_metric("round", round_index, plot=False)
                live.log_metric("loss", loss)
                live.next_step()

            ensemble = run_ensemble(method, setup.make_learner, pool, workspace.zero_shot_weights, first_round, device,
                                    on_epoch, setup.checkpoints)
            if not method.trains:
                live.log_metric("loss", float("nan"))
                live.next_step()

        save_training_outputs(ensemble, method, params, pool, setup.image_space)
        if setup.checkpoints is not None:
            setup.checkpoints.clear()  # the outputs are written: the resumable states are no longer needed


if __name__ == "__main__":
    app()
