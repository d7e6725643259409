"""diagnose: the domain gap between synthetic and real target images; the synthetic images' class
fidelity (label-free: the share the frozen CLIP assigns to their prompt class, per class, for this
run's generator and for the unadapted sample `adapt` made); the auxiliary classifier's accuracy on the
training pool beside the text classifier's and their fusion's (analysis only: true labels are read to
report, never to choose). Metrics in `diagnostics.json`, a synthetic-vs-target contact sheet with each
synthetic image framed green (CLIP agrees with its class) or red."""

from pathlib import Path

import typer

from pipeline.auxiliary.domain_gap import classifier_accuracies, domain_gap, fidelity_report
from pipeline.auxiliary.prototypes import faithful
from pipeline.config.params import load_params
from pipeline.core import paths
from pipeline.core.artifacts import load_tensors, read_json, read_table, write_json
from pipeline.diffusion.synthetic import contact_sheet
from pipeline.workspace import load_workspace
from stages._cli import stage

app = typer.Typer(add_completion=False)


@app.command()
def main(params_file: Path = typer.Option(Path("params.yaml"), "--params")) -> None:
    with stage("diagnose") as log:
        params = load_params(params_file)
        workspace = load_workspace()
        train, test = workspace.split("train"), workspace.split("test")
        features, labels = workspace.real[train], workspace.manifest.loc[train, "label"].to_numpy()
        tensors = load_tensors(paths.PROTOTYPES)[0]
        accuracy = classifier_accuracies(features, labels, workspace.zero_shot_weights, tensors["prototypes"],
                                         params.auxiliary.temperature, params.pseudolabel.fusion_lambda)
        gap = domain_gap(workspace.synthetic, features, workspace.real[test])
        weights = workspace.zero_shot_weights
        prior, prior_features = read_table(paths.PRIOR_FEATURES)
        fidelity, per_class = fidelity_report(workspace.synthetic, workspace.synthetic_labels, weights, workspace.class_names,
                                              tensors["synthetic_kept"].astype(bool),
                                              read_json(paths.ADAPTER_INFO).get("enabled", False),
                                              prior["label"].to_numpy(), prior_features)
        write_json(paths.DIAGNOSTICS, {"domain_gap": gap, "class_fidelity": fidelity, "train_pool_accuracy": accuracy})
        log.info("synthetic vs target: cosine %.3f (median %.3f), Fréchet %.3f (real train vs test: %.3f); "
                 "class fidelity %.1f%% (%s generator; unadapted %.1f%%; kept %.1f%%); "
                 "training-pool accuracy text %.1f%%, auxiliary %.1f%%, fused %.1f%% (analysis only)",
                 gap["cosine_mean"], gap["cosine_median"], gap["frechet"], gap["frechet_floor"],
                 100 * fidelity["synthetic"], fidelity["generator"], 100 * fidelity["unadapted"], 100 * fidelity["kept"],
                 100 * accuracy["text"], 100 * accuracy["auxiliary"], 100 * accuracy["fused"])
        manifest, _ = read_table(paths.MANIFEST, columns=["split", "label", "path", "image"])
        synthetic_ids, _ = read_table(paths.SYNTHETIC_FEATURES, columns=["id"])
        frames = dict(zip(synthetic_ids["id"], faithful(workspace.synthetic, workspace.synthetic_labels, weights)))
        contact_sheet(paths.SYNTHETIC, paths.GAP_SHEET, params.evaluate.sheet_classes, params.evaluate.sheet_images,
                      target=manifest[manifest["split"] == "train"], faithful=frames,
                      fidelity=dict(enumerate(per_class)))


if __name__ == "__main__":
    app()
