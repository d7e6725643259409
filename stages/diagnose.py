"""diagnose: the domain gap between synthetic and real target images; the synthetic images' class
fidelity (label-free: the share the frozen CLIP assigns to their prompt class, per class, for this
run's generator and for the unadapted sample `adapt` made); the auxiliary classifier's accuracy on the
training pool beside the text classifier's and their fusion's (analysis only: true labels are read to
report, never to choose). Metrics in `diagnostics.json`, a synthetic-vs-target contact sheet with each
synthetic image framed green (CLIP agrees with its class) or red."""

from pathlib import Path

import typer

from pipeline.core import paths
from pipeline.core.artifacts import load_tensors, read_json, read_table, write_json
from pipeline.auxiliary.prototypes import class_fidelity, faithful
from pipeline.auxiliary.domain_gap import classifier_accuracies, domain_gap
from pipeline.diffusion.synthetic import contact_sheet
from pipeline.config.params import load_params
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
        weights, names = workspace.zero_shot_weights, workspace.class_names
        overall, per_class = class_fidelity(workspace.synthetic, workspace.synthetic_labels, weights)
        kept = tensors["synthetic_kept"].astype(bool)
        kept_overall, _ = class_fidelity(workspace.synthetic[kept], workspace.synthetic_labels[kept], weights)
        adapted = read_json(paths.ADAPTER_INFO).get("enabled", False)
        prior, prior_features = read_table(paths.PRIOR_FEATURES)
        unadapted, unadapted_per_class = (class_fidelity(prior_features, prior["label"].to_numpy(), weights) if adapted
                                          else (overall, per_class))
        fidelity = {"generator": "adapted" if adapted else "unadapted", "synthetic": overall,
                    "kept": kept_overall, "unadapted": unadapted, "unadapted_images": len(prior) if adapted else len(kept),
                    "per_class": {name: {"synthetic": float(a), "unadapted": float(b)}
                                  for name, a, b in zip(names, per_class, unadapted_per_class)}}
        write_json(paths.DIAGNOSTICS, {"domain_gap": gap, "class_fidelity": fidelity, "train_pool_accuracy": accuracy})
        log.info("synthetic vs target: cosine %.3f (median %.3f), Fréchet %.3f (real train vs test: %.3f); "
                 "class fidelity %.1f%% (%s generator; unadapted %.1f%%; kept %.1f%%); "
                 "training-pool accuracy text %.1f%%, auxiliary %.1f%%, fused %.1f%% (analysis only)",
                 gap["cosine_mean"], gap["cosine_median"], gap["frechet"], gap["frechet_floor"], 100 * overall,
                 fidelity["generator"], 100 * unadapted, 100 * kept_overall,
                 100 * accuracy["text"], 100 * accuracy["auxiliary"], 100 * accuracy["fused"])
        manifest, _ = read_table(paths.MANIFEST, columns=["split", "label", "path", "image"])
        synthetic_ids, _ = read_table(paths.SYNTHETIC_FEATURES, columns=["id"])
        frames = dict(zip(synthetic_ids["id"], faithful(workspace.synthetic, workspace.synthetic_labels, weights)))
        contact_sheet(paths.SYNTHETIC, paths.GAP_SHEET, params.evaluate.sheet_classes, params.evaluate.sheet_images,
                      target=manifest[manifest["split"] == "train"], faithful=frames,
                      fidelity=dict(enumerate(per_class)))


if __name__ == "__main__":
    app()
