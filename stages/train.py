"""train: CoOp prompt learning on cached features, with the method's pseudo-labelling rounds."""

from pathlib import Path

import typer
from dvclive import Live

from pipeline import paths
from pipeline.artifacts import save_tensors, write_json
from pipeline.devices import resolve_device
from pipeline.models import load_clip
from pipeline.params import load_params
from pipeline.prompts import PromptLearner
from pipeline.training import run_method
from pipeline.workspace import load_workspace, read_pseudo_labels, training_pool
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("train"):
        params = load_params(params_file)
        device = resolve_device(params.train.device, "train.device")
        workspace = load_workspace()
        pool = training_pool(workspace, params.paradigm, with_prototypes=params.method == "air")
        pool_ids = workspace.manifest.loc[workspace.split("train"), "id"].to_numpy()
        first_round = read_pseudo_labels(pool_ids)
        clip = None if params.method == "zeroshot" else load_clip(params.clip.arch, params.clip.pretrained, device)

        def make_learner() -> PromptLearner:
            return PromptLearner(clip.model, clip.tokenizer, workspace.class_names, params.train.n_ctx,
                                 params.train.ctx_init, params.seed).to(device)

        with Live(str(paths.TRAIN_LIVE), save_dvc_exp=False, dvcyaml=None) as live:
            def on_epoch(round_index: int, epoch: int, loss: float) -> None:
                live.log_metric("round", round_index, plot=False)
                live.log_metric("loss", loss)
                live.next_step()

            result = run_method(make_learner, pool, workspace.zero_shot_weights, first_round, params, device, on_epoch)
            if not result.rounds:
                live.log_metric("loss", float("nan"))
                live.next_step()

        tensors = {"class_weights": result.class_weights}
        if result.context is not None:
            tensors.update({name: value.numpy() for name, value in result.context.items()})
        save_tensors(paths.PROMPT, tensors, {"method": params.method, "arch": params.clip.arch,
                                             "pretrained": params.clip.pretrained})
        write_json(paths.ROUNDS, {
            "method": params.method,
            "n_pseudo_labels": int(len(result.pseudo.rows)),
            "pseudo_label_accuracy": result.pseudo.accuracy(pool.true_labels),
            "rounds": [vars(r) for r in result.rounds],
        })


if __name__ == "__main__":
    app()
