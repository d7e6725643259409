"""The params schema's sections, one pydantic model per params.yaml section, and the names they
choose from; `pipeline.config.params` assembles them into `Params`."""

from __future__ import annotations

import functools
import math
import string
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PARADIGMS = ("ul", "ssl", "trzsl", "candidates")
PLL_LOSSES = ("cc", "rc", "lws", "cavl")  # pipeline/training/losses.py
BENCHMARKS = ("flowers102", "resisc45", "dtd", "eurosat", "fgvc_aircraft", "cub")  # pipeline/datasets/<name>.py
TORCHVISION_DATASETS = ("food101", "oxford_pets", "caltech101", "sun397", "stanford_cars", "cifar10", "cifar100",
                        "mnist")
DATASETS = ("demo", "folder") + BENCHMARKS + TORCHVISION_DATASETS
BACKGROUNDS = ("plain", "gradient", "stripes", "checker", "noise")


# Every seed: what both numpy's legacy RandomState (0 <= seed < 2**32) and torch (< 2**64) take, so a seed
# that passes `check` cannot overflow hours later in adapt or train.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class _Strict(BaseModel):
    # allow_inf_nan: a number written as a string ("inf", "nan") or inside a list is refused too.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value, info):
        """YAML's `true` would pass as the number 1 (`epochs: true` trains one epoch): only a yes/no
        key takes a boolean."""
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation is not bool:
            raise ValueError("a boolean is not allowed here; give a value of the key's type")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _finite(cls, value):
        """YAML's `.inf` passes every bound (`fusion_lambda: .inf` made every posterior NaN): here, once
        for every key, with one message even where a key also takes a word (`temperature: auto`)."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("give a finite number; .inf and .nan are not allowed")
        return value


def _one_of(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def _range(value: list[float], key: str) -> list[float]:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{key} must be [low, high] with low <= high")
    return value


WORLD_PRESETS_FILE = Path(__file__).resolve().parents[1] / "demo" / "presets.yaml"
WORLD_SHIFT_KNOBS = ("backgrounds", "distractors", "contrast", "noise", "blur", "radius")


@functools.lru_cache(maxsize=1)
def _presets_file() -> str:
    return WORLD_PRESETS_FILE.read_text()


def world_presets() -> dict[str, dict]:
    """The demo world's presets (`pipeline/demo/presets.yaml`): a value for every shift knob (the file
    is read once per process; every call parses a fresh copy, so no caller shares a mutable value)."""
    return yaml.safe_load(_presets_file())


class WorldParams(_Strict):
    """The demo world's knobs (`dataset.name: demo`). The shift knobs left out or null take the
    preset's value (`pipeline/demo/presets.yaml`: easy, default = the target domain of the default
    run, hard); a knob set explicitly wins over its preset."""

    preset: str = "default"
    seed: Seed = 0
    images_per_class: int = Field(24, ge=2)
    test_images_per_class: int = Field(24, ge=1)
    image_size: int = Field(32, ge=16)
    backgrounds: list[Literal["plain", "gradient", "stripes", "checker", "noise"]]
    distractors: list[int]
    contrast: list[float]
    noise: float = Field(ge=0)
    blur: list[float]
    radius: list[float]

    @model_validator(mode="before")
    @classmethod
    def _preset_values(cls, data):
        if not isinstance(data, dict):
            return data
        presets = world_presets()
        name = data.get("preset") if data.get("preset") is not None else "default"
        if name not in presets:
            raise ValueError(f"unknown dataset.demo.preset {name!r}; choose one of: {', '.join(presets)}")
        return {**data, "preset": name,
                **{knob: presets[name][knob] for knob in WORLD_SHIFT_KNOBS if data.get(knob) is None}}

    @field_validator("distractors", "contrast", "blur", "radius")
    @classmethod
    def _ranges(cls, value, info):
        return _range(value, info.field_name)

    @field_validator("backgrounds")
    @classmethod
    def _some(cls, value):
        if not value:
            raise ValueError(f"give at least one background kind: {', '.join(BACKGROUNDS)}")
        return value


class DatasetParams(_Strict):
    """Where images come from. `demo` is the procedural world rendered in memory (tests, default run)."""

    name: str = "demo"
    root: Optional[str] = None
    download: bool = False
    class_names_file: Optional[str] = None
    test_fraction: Optional[float] = Field(None, gt=0, lt=1)  # null: the source's (0.5; RESISC45 0.8)
    split_seed: Seed = 0
    demo: WorldParams = Field(default_factory=WorldParams)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        return _one_of(value, DATASETS, "dataset")

    @model_validator(mode="after")
    def _root_needed(self) -> "DatasetParams":
        if self.name != "demo" and not self.root:
            raise ValueError(
                f"dataset.name={self.name!r} needs dataset.root (the folder that holds the images"
                + (", or where torchvision may download them with dataset.download: true)"
                   if self.name in TORCHVISION_DATASETS + ("flowers102", "dtd", "eurosat", "fgvc_aircraft") else ")")
            )
        return self


class ParadigmParams(_Strict):
    """SSL: `n_label` labeled images per class; TRZSL: `seen_fraction` of classes fully labeled;
    candidates: a label set per training image, from `candidates_file` or drawn (true label plus every
    other label with probability `partial_rate`, from `candidate_seed`)."""

    n_label: int = Field(2, ge=1)
    seen_fraction: float = Field(0.62, gt=0, lt=1)
    split_seed: Seed = 500
    partial_rate: float = Field(0.3, ge=0, lt=1)
    candidate_seed: Seed = 0
    candidates_file: Optional[str] = None


class GenerateParams(_Strict):
    """Text-to-image generation of synthetic class images through diffusers."""

    model: str = "stabilityai/sd-turbo"
    seed: Seed = 0
    images_per_class: int = Field(16, ge=0)
    templates: list[str] = ["a photo of a {}"]
    size: int = Field(512, ge=8)
    steps: int = Field(1, ge=1)
    guidance: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    shard_size: int = Field(512, ge=1)
    adapter_scale: float = Field(1.0, ge=0)  # the adapt stage's LoRA at sampling: 0 = the base generator, 1 = as trained
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"
    device: str = "auto"
    cache_dir: str = ".cache/generate"

    @field_validator("templates")
    @classmethod
    def _has_slot(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one template, e.g. ['a photo of a {}']")
        for template in value:
            try:
                fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
            except ValueError as error:  # an unmatched brace
                raise ValueError(f"template {template!r} is not a format string ({error}); "
                                 "write a literal brace as {{ or }}") from None
            if fields != [""]:
                raise ValueError(f"template {template!r} must have exactly one '{{}}' slot for the class name "
                                 f"and no other fields (found {len(fields)}: {fields}); "
                                 "write a literal brace as {{ or }}")
        return value


class AdaptParams(_Strict):
    """AiR's generator adaptation: LoRA on the UNet, trained on the unlabeled target training images."""

    enabled: bool = False
    captions: Literal["domain", "pseudolabel"] = "domain"
    domain_caption: str = "a photo"
    k: int = Field(16, ge=1)      # pseudolabel captions: UPL's k most confident images per class
    rank: int = Field(8, ge=1)
    target_modules: list[str] = ["to_q", "to_k", "to_v", "to_out.0"]
    steps: int = Field(500, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(4, ge=1)
    resolution: int = Field(512, ge=8)
    seed: Seed = 0
    # DreamBooth's prior preservation: class images from the unadapted generator, with their class
    # captions, trained beside the target images so the adapter keeps each class prompt's class.
    prior_weight: float = Field(0.0, ge=0)          # 0 = off; the prior batch's loss weight
    prior_images_per_class: int = Field(8, ge=1)
    device: str = "auto"


class ClipParams(_Strict):
    """open_clip model: `arch` is an open_clip config name, `pretrained` a tag, a local file or `random`."""

    arch: str = "ViT-B-32"
    pretrained: str = "openai"
    templates: list[str] = ["a photo of a {}."]
    batch_size: int = Field(128, ge=1)
    num_workers: int = Field(2, ge=0)
    device: str = "auto"

    @field_validator("templates")
    @classmethod
    def _has_slot(cls, value: list[str]) -> list[str]:
        return GenerateParams._has_slot(value)


class AuxiliaryParams(_Strict):
    """AiR's image-image classifier from synthetic features (pipeline/auxiliary/prototypes.py)."""

    keep: Optional[int] = Field(None, ge=1)   # K synthetic images per class nearest the class mean; null = all
    filter: Literal["none", "fidelity"] = "none"  # fidelity: keep the images the frozen CLIP assigns to their class
    score: Literal["prototype", "mean_similarity"] = "prototype"
    temperature: Union[Literal["auto"], float] = 100.0  # auto: matched to the text posterior's mean entropy

    @field_validator("temperature")
    @classmethod
    def _positive(cls, value):
        if value != "auto" and value <= 0:
            raise ValueError("temperature is a positive number, or auto")
        return value


class CplParams(_Strict):
    """CPL's candidate-set thresholds: `auto` takes the authors' value for the dataset and paradigm
    (`pipeline/methods/cpl.py`); `beta` may also be `auto*m`, i.e. 1 - m / C."""

    alpha: Union[Literal["auto"], float] = "auto"
    beta: Union[str, float] = "auto"

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value):
        if value != "auto" and not 0 < value < 1:
            raise ValueError("alpha is a quantile: a number in (0, 1), or auto")
        return value

    @field_validator("beta")
    @classmethod
    def _beta(cls, value):
        if isinstance(value, str):
            if value == "auto":
                return value
            try:
                if value.startswith("auto*") and 0 < float(value.removeprefix("auto*")) < math.inf:
                    return value
                value = float(value)
            except ValueError:
                pass
            if isinstance(value, str):
                raise ValueError("beta is a quantile in [0, 1), auto, or auto*m (1 - m / classes, m > 0)")
        if not 0 <= value < 1:
            raise ValueError("beta is a quantile: a number in [0, 1), auto, or auto*m")
        return value


class PseudolabelParams(_Strict):
    """Selection knobs. `selection` is the method whose rule AiR runs on its fused posterior."""

    k: int = Field(16, ge=1)
    rounds: int = Field(10, ge=1)
    selection: str = "grip"
    fusion_lambda: float = Field(1.0, ge=0)
    cpl: CplParams = CplParams()


class TrainParams(_Strict):
    """CoOp prompt learning on cached image features. Within `Params`, the recipe keys (n_ctx ...
    batch_size) default to the protocol's (`pipeline/config/protocols.py`); these defaults are the project's."""

    n_ctx: int = Field(16, ge=1)
    ctx_init: str = "a photo of a"
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(50, ge=1)
    warmup_epochs: int = Field(1, ge=0)
    batch_size: int = Field(32, ge=1)
    labeled_weight: float = Field(1.0, ge=0)
    synthetic_weight: float = Field(1.0, ge=0)
    ensemble: int = Field(1, ge=1)
    pll_loss: str = "cc"      # partial-label loss of method pll (pipeline/training/losses.py)
    lws_weight: float = Field(1.0, ge=0)   # LWS: weight of the non-candidate term
    pll_numerics: Literal["exact", "reference"] = "exact"  # the losses' exact maths, or CoOpPLL's epsilons
    align: bool = False       # prompt alignment with the handcrafted prompt's posterior
    align_mix: float = Field(0.0, ge=0, le=1)  # share of the learnable prompt's posterior in the target
    # What trains besides the text context (pipeline/training/learners.py); anything but text prompts on a
    # frozen tower runs the image tower on the pixel cache every step.
    prompt: Literal["text", "visual", "multimodal"] = "text"
    visual_tokens: int = Field(16, ge=0)     # VPT tokens (ViT) / padding prompt on (> 0) for other towers
    visual_prompt_kind: Literal["auto", "vpt", "padding"] = "auto"  # auto: vpt on ViT towers, padding otherwise
    padding_width: Optional[int] = Field(None, ge=1)  # padding prompt border, px; null = 30/224 of the input
    visual_adapter: bool = False             # residual bottleneck adapter on the image feature (identity at init)
    full_finetune: bool = False              # every image-tower weight trains, at tower_lr
    tower_lr: float = Field(1e-5, gt=0)
    augment: Literal["crop_flip", "none"] = "none"  # image-space views (grip/cpl protocols: crop_flip, as GRIP's)
    crop_scale: list[float] = [0.08, 1.0]    # random resized crop: share of the image's area
    accumulate: int = Field(1, ge=1)         # micro-batches per step (gradients add up to the batch's)
    checkpoint_every: int = Field(1, ge=1)   # image-space training: epochs between resumable checkpoints
    device: str = "auto"

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, value):
        value = _range(value, "crop_scale")
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError("crop_scale is [low, high] shares of the image area, 0 < low <= high <= 1")
        return value

    @field_validator("pll_loss")
    @classmethod
    def _pll_loss(cls, value: str) -> str:
        return _one_of(value, PLL_LOSSES, "pll_loss")


class CoftParams(_Strict):
    """CoFT / CoFT+ (pipeline/methods/coft.py, coft_plus.py): a reconstruction from the abstract; every
    choice the paper's body would fix is a knob here (docs/methods.md, "CoFT / CoFT+")."""

    negative_init: str = "a photo without a"  # the negative context's initial phrase
    negative_weight: float = Field(1.0, ge=0)   # the negative prompt's yes/no loss, beside CE on the positive
    cofilter: Literal["agree", "clean"] = "agree"  # phase 2 keeps: agree = phase-1 and zero-shot models agree
    #                                               and the negative prompt calls it clean; clean = the latter only
    warmup: Literal["confident", "pool"] = "confident"  # round 1's labels: the pseudolabel.k most confident
    #                                               per class, or every pool image's zero-shot label (DeFT's noisy set)
    negatives: Literal["random", "all"] = "random"  # the negative prompt's "no": one random other class per image,
    #                                               or every other class
    adapter: bool = True                        # the warm-up and phase 1 train a residual visual adapter too
    finetune_epochs: Optional[int] = Field(None, ge=1)  # phase 2's epochs (null: train.epochs)
    phase1_share: Optional[float] = Field(None, gt=0, le=1)  # phase 1 trains on the clean images only (null), or
    #                                               on the share·|U|/C most confident clean ones per class (GRIP's rule)
    iterations: int = Field(2, ge=1)            # CoFT+: (phase 1, phase 2) repetitions after the warm-up round
    moco_weight: float = Field(0.1, ge=0)       # CoFT+: momentum contrastive term in phase 2
    moco_momentum: float = Field(0.999, ge=0, lt=1)
    moco_queue: int = Field(1024, ge=1)
    moco_temperature: float = Field(0.07, gt=0)
    descriptions_file: Optional[str] = None     # CoFT+: JSON {"class name": ["description", ...]}


class ComputeParams(_Strict):
    """Where generation and feature extraction run (pipeline/runtime/compute.py). Never a DVC param: these keys
    change how fast shards are made, not their bytes."""

    backend: Literal["local", "ray"] = "local"
    ray_address: str = "auto"     # auto: a running cluster if there is one, else a local Ray in-process
    workers: Optional[int] = Field(None, ge=1)  # local: null = one process per visible GPU; ray on CPU: tasks at once
    max_retries: int = Field(3, ge=0)           # ray: a task whose worker dies or raises is run again


class EvaluateParams(_Strict):
    """Reporting: the confusion plot's size, and the image grids' rows (classes) and columns."""

    confusion_max_classes: int = Field(100, ge=1)
    sheet_classes: int = Field(24, ge=1)
    sheet_images: int = Field(8, ge=1)
