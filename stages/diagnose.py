"""diagnose: the domain gap between synthetic and real target images, and the auxiliary classifier's
accuracy on the training pool beside the text classifier's (analysis only: true labels are read to
report, never to choose). Metrics in `diagnostics.json`, a synthetic-vs-target contact sheet."""

from pathlib import Path

import typer

from pipeline import paths
from pipeline.artifacts import load_tensors, read_table, write_json
from pipeline.domain_gap import classifier_accuracies, domain_gap
from pipeline.generation import contact_sheet
from pipeline.params import load_params
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
        accuracy = classifier_accuracies(features, labels, workspace.zero_shot_weights,
                                         load_tensors(paths.PROTOTYPES)[0]["prototypes"],
                                         params.auxiliary.temperature, params.pseudolabel.fusion_lambda)
        gap = domain_gap(workspace.synthetic, features, workspace.real[test])
        write_json(paths.DIAGNOSTICS, {"domain_gap": gap, "train_pool_accuracy": accuracy})
        log.info("synthetic vs target: cosine %.3f (median %.3f), Fréchet %.3f (real train vs test: %.3f); "
                 "training-pool accuracy text %.1f%%, auxiliary %.1f%%, fused %.1f%% (analysis only)",
                 gap["cosine_mean"], gap["cosine_median"], gap["frechet"], gap["frechet_floor"],
                 100 * accuracy["text"], 100 * accuracy["auxiliary"], 100 * accuracy["fused"])
        manifest, _ = read_table(paths.MANIFEST, columns=["split", "label", "path", "image"])
        contact_sheet(paths.SYNTHETIC, paths.GAP_SHEET, params.evaluate.sheet_classes, params.evaluate.sheet_images,
                      target=manifest[manifest["split"] == "train"])


if __name__ == "__main__":
    app()
