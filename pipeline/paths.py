"""Where every stage reads and writes, relative to the project root (mirrors dvc.yaml)."""

from pathlib import Path

PREPARED = Path("data/prepared")
MANIFEST = PREPARED / "manifest.parquet"
CLASSES = PREPARED / "classes.json"
SYNTHETIC = Path("data/synthetic")
FEATURES = Path("data/features")
IMAGE_FEATURES = FEATURES / "images.parquet"
TEXT_FEATURES = FEATURES / "text.parquet"
PROTOTYPES = Path("data/auxiliary/prototypes.safetensors")
PSEUDOLABELS = Path("data/pseudolabels/pseudolabels.parquet")
PSEUDOLABEL_SUMMARY = Path("data/pseudolabels/summary.json")
PROMPT = Path("data/train/prompt.safetensors")
ROUNDS = Path("data/train/rounds.json")
TRAIN_LIVE = Path("dvclive/train")
METRICS = Path("metrics.json")
PLOTS = Path("plots")
SYNTHETIC_SHEET = PLOTS / "synthetic.png"
TRAIN_SHEET = PLOTS / "train_images.png"
CONFUSION = PLOTS / "confusion.csv"
PER_CLASS = PLOTS / "per_class.csv"
