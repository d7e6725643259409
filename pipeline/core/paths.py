"""Where every stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from pathlib import Path

DVC_TEMP_WORKSPACES = (".dvc", "tmp", "exps")


def shared_root(workspace: Path | None = None) -> Path:
    """The project a workspace belongs to: itself, or for the temporary workspace of a queued or
    `--temp` experiment (`<project>/.dvc/tmp/exps/<tmp>/`) the project it was made from, so caches
    meant to be shared (generated images, running-stage registry) are shared by every experiment."""
    parts = (workspace or Path.cwd()).resolve().parts
    for index in range(len(parts) - len(DVC_TEMP_WORKSPACES)):
        if parts[index:index + len(DVC_TEMP_WORKSPACES)] == DVC_TEMP_WORKSPACES:
            return Path(*parts[:index])
    return (workspace or Path.cwd()).resolve()


INPUTS = Path("data/inputs")            # fingerprints of inputs outside the repo (the check stage)
DATASET_INPUT = INPUTS / "dataset.json"
CLIP_INPUT = INPUTS / "clip.json"
GENERATOR_INPUT = INPUTS / "generator.json"
TRAINING_INPUT = INPUTS / "training.json"
PREPARED = Path("data/prepared")
MANIFEST = PREPARED / "manifest.parquet"
CLASSES = PREPARED / "classes.json"
CANDIDATE_SETS = PREPARED / "candidates.parquet"   # the candidates paradigm's label sets (else empty)
ADAPTER = Path("data/adapter")
ADAPTER_INFO = ADAPTER / "adapter.json"
ADAPTER_PRIOR = ADAPTER / "prior"    # the unadapted generator's class images: prior preservation, fidelity
ADAPT_LIVE = Path("dvclive/adapt")
SYNTHETIC = Path("data/synthetic")
REAL_FEATURES = Path("data/features/real")
IMAGE_FEATURES = REAL_FEATURES / "images.parquet"
TEXT_FEATURES = REAL_FEATURES / "text.parquet"
SYNTHETIC_FEATURES = Path("data/features/synthetic/images.parquet")
PRIOR_FEATURES = Path("data/features/synthetic/prior.parquet")
PROTOTYPES = Path("data/auxiliary/prototypes.safetensors")
PSEUDOLABELS = Path("data/pseudolabels/pseudolabels.parquet")
PSEUDOLABEL_SUMMARY = Path("data/pseudolabels/summary.json")
PROMPT = Path("data/train/prompt.safetensors")
VISUAL = Path("data/train/visual.safetensors")      # the trained image-tower parts (image-space training)
FEATURE_CACHE = Path(".cache/features")             # under the shared root: per-shard embeddings
PIXEL_CACHE = Path(".cache/pixels")                 # under the shared root: decoded images, once
TRAIN_CHECKPOINTS = Path(".cache/train")            # under the shared root: resumable round checkpoints
ROUNDS = Path("data/train/rounds.json")
TRAIN_LIVE = Path("dvclive/train")
METRICS = Path("metrics.json")
DIAGNOSTICS = Path("diagnostics.json")
PLOTS = Path("plots")
SYNTHETIC_SHEET = PLOTS / "synthetic.png"
GAP_SHEET = PLOTS / "synthetic_vs_target.png"
TRAIN_SHEET = PLOTS / "train_images.png"
CONFUSION = PLOTS / "confusion.csv"
PER_CLASS = PLOTS / "per_class.csv"
