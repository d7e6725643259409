"""train: the method's rounds of prompt learning and the prompt ensemble: text prompts on cached
features, or (visual / multimodal prompts, adapter, full fine-tuning) on the pixel cache, resumable."""

import json
from pathlib import Path

import numpy as np
import typer
from dvclive import Live

from pipeline.core import paths
from pipeline.core.artifacts import save_tensors, write_json
from pipeline.runtime.devices import resolve_device
from pipeline.methods.catalog import build_method
from pipeline.clip.models import load_clip
from pipeline.config.params import load_params
from pipeline.training.checkpoints import Checkpoints
from pipeline.training.learners import make_learner_factory
from pipeline.core.paths import shared_root
from pipeline.clip.pixels import PixelSpec
from pipeline.config.protocols import RECIPE_KEYS
from pipeline.training.loop import run_ensemble
from pipeline.workspace import load_workspace, read_pseudo_labels, training_images, training_pool
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("train") as log:
        params = load_params(params_file)
        method = build_method(params)
        device = resolve_device(params.train.device, "train.device")
        workspace = load_workspace()
        pool = training_pool(workspace, params.paradigm, with_prototypes=method.needs_prototypes,
                             with_candidate_sets=method.needs_candidate_sets)
        pool_ids = workspace.manifest.loc[workspace.split("train"), "id"].to_numpy()
        first_round = read_pseudo_labels(pool_ids, len(workspace.class_names))
        clip = load_clip(params.clip.arch, params.clip.pretrained, device) if method.trains else None
        image_space = method.trains_image_tower()
        store = None
        if image_space:
            store = training_images(pool, PixelSpec.from_preprocess(clip.preprocess), params.synthetic_plan(method.reads_synthetic_images),
                                    workspace.class_names)
            log.info("image-space training on %d cached images", len(store))
        make_learner = make_learner_factory(params, clip, workspace.class_names, workspace.zero_shot_weights, store,
                                            device) if method.trains else None
        checkpoints = Checkpoints(shared_root() / paths.TRAIN_CHECKPOINTS, params.train.checkpoint_every) \
            if image_space else None

        with Live(str(paths.TRAIN_LIVE), save_dvc_exp=False, dvcyaml=None) as live:
            def on_epoch(member: int, round_index: int, epoch: int, loss: float) -> None:
                live.log_metric("member", member, plot=False)
                live.log_metric("round", round_index, plot=False)
                live.log_metric("loss", loss)
                live.next_step()

            ensemble = run_ensemble(method, make_learner, pool, workspace.zero_shot_weights, first_round, device,
                                    on_epoch, checkpoints)
            if not method.trains:
                live.log_metric("loss", float("nan"))
                live.next_step()

        tensors = {"class_weights": ensemble.class_weights}
        if method.trains:
            contexts = [m.context for m in ensemble.members]
            text = [c.get("ctx", c.get("text.ctx")) for c in contexts]
            if text[0] is not None:
                tensors["ctx"] = np.stack([t.numpy() for t in text])
            tensors["member_class_weights"] = np.stack([m.class_weights for m in ensemble.members])
        if image_space and ensemble.members[0].visual_config is not None:
            save_tensors(paths.VISUAL, {f"member{m}.{name.removeprefix('visual.')}": value.numpy()
                                        for m, context in enumerate(contexts) for name, value in context.items()
                                        if name.startswith("visual.")},
                         {"arch": params.clip.arch, "pretrained": params.clip.pretrained,
                          "members": str(len(contexts)), "config": json.dumps(ensemble.members[0].visual_config)})
        else:
            paths.VISUAL.unlink(missing_ok=True)  # a frozen tower: evaluate reads the cached test features
        save_tensors(paths.PROMPT, tensors, {"method": method.name, "arch": params.clip.arch,
                                             "pretrained": params.clip.pretrained,
                                             "ensemble": str(len(ensemble.members))})
        first = ensemble.members[0]  # the pseudo-labels reported are those of the first member
        write_json(paths.ROUNDS, {
            "method": method.name,
            "protocol": params.protocol,
            "recipe": {key: getattr(params.train, key) for key in RECIPE_KEYS},  # after the protocol's defaults
            "templates": params.clip.templates,
            "image_side": ensemble.members[0].visual_config,  # how the last round's image side was built; null: frozen
            "ensemble": len(ensemble.members),
            "n_pseudo_labels": len(first.pseudo),
            "pseudo_label_accuracy": first.pseudo.accuracy(pool.true_labels),
            "candidate_coverage": first.pseudo.coverage(pool.true_labels),
            "mean_candidate_set_size": first.pseudo.mean_set_size(),
            "members": [[vars(r) for r in member.rounds] for member in ensemble.members],
        })
        if checkpoints is not None:
            checkpoints.clear()  # the outputs are written: the resumable states are no longer needed


if __name__ == "__main__":
    app()
