"""The one params schema: `params.yaml` is validated here, once, with errors that name the fix.

Every stage loads the whole file through `load_params`, so a typo anywhere fails fast with the key,
the bad value and the allowed values, before any work starts.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError, field_validator, model_validator

from pipeline.config.sections import (  # noqa: F401  (re-exported: the schema's one import path)
    BACKGROUNDS,
    BENCHMARKS,
    DATASETS,
    PARADIGMS,
    PLL_LOSSES,
    TORCHVISION_DATASETS,
    WORLD_PRESETS_FILE,
    WORLD_SHIFT_KNOBS,
    AdaptParams,
    AuxiliaryParams,
    ClipParams,
    CoftParams,
    ComputeParams,
    CplParams,
    DatasetParams,
    EvaluateParams,
    GenerateParams,
    ParadigmParams,
    PseudolabelParams,
    Seed,
    TrainParams,
    WorldParams,
    _one_of,
    _Strict,
    world_presets,
)
from pipeline.core.errors import PipelineError


class Params(_Strict):
    seed: Seed = 0
    method: str = "air"
    paradigm: str = "ul"
    protocol: str = "project"    # pipeline/config/protocols.py: the rules of a reference codebase
    dataset: DatasetParams = DatasetParams()
    paradigm_options: ParadigmParams = ParadigmParams()
    adapt: AdaptParams = AdaptParams()
    generate: GenerateParams = GenerateParams()
    clip: ClipParams = ClipParams()
    auxiliary: AuxiliaryParams = AuxiliaryParams()
    pseudolabel: PseudolabelParams = PseudolabelParams()
    train: TrainParams = TrainParams()
    coft: CoftParams = CoftParams()
    evaluate: EvaluateParams = EvaluateParams()
    compute: ComputeParams = ComputeParams()

    @field_validator("paradigm")
    @classmethod
    def _paradigm(cls, value: str) -> str:
        return _one_of(value, PARADIGMS, "paradigm")

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        from pipeline.config.protocols import PROTOCOLS

        return _one_of(value, tuple(PROTOCOLS), "protocol")

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data):
        """Recipe keys (`train.*`) and `clip.templates` left out or null take the protocol's values."""
        from pipeline.config.protocols import resolve

        return resolve(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _candidates_file_needs_candidates(self) -> "Params":
        if self.paradigm_options.candidates_file and self.paradigm != "candidates":
            raise ValueError("paradigm_options.candidates_file is read only under paradigm: candidates; "
                             "set paradigm: candidates or remove the file")
        return self

    def synthetic_plan(self, reads_synthetic_images: bool) -> GenerateParams:
        """The generation this experiment needs: `generate` as set, or no images for a method that
        reads none (so a zero-shot or GRIP run pays for no adaptation and no generation). Whether the
        method reads them is the method's (`Method.reads_synthetic_images`), recorded by `check` in
        `data/inputs/generator.json` (`pipeline.core.inputs.reads_synthetic_images`)."""
        if reads_synthetic_images:
            return self.generate
        return self.generate.model_copy(update={"images_per_class": 0})

    def prior_sample_plan(self) -> GenerateParams:
        """The unadapted generator's class sample `adapt` makes: generate's first
        `adapt.prior_images_per_class` images per class."""
        return self.generate.model_copy(update={"images_per_class": self.adapt.prior_images_per_class})


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
        bad = item.get("input")
        shown = "" if isinstance(bad, dict) or item["type"] == "extra_forbidden" else f" (got {bad!r})"
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def parse_params(data: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(data or {})
    except ValidationError as error:
        raise PipelineError(_describe(error, source)) from None


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first: int, again: int):
        super().__init__(f"key {key} appears twice (lines {first} and {again}); DVC refuses such a file: "
                         "keep one of them")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps a repeated key's last value, DVC refuses the file: without this, `check` and a
    stage run directly would run a params file that `dvc repro` rejects (or another value than meant)."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        self._unique_keys(node, "", set())
        return self.construct_document(node)

    def _unique_keys(self, node: yaml.Node, where: str, visited: set[int]) -> None:
        if id(node) in visited:  # an alias: its node is checked once
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._unique_keys(item, f"{where}.{index}" if where else str(index), visited)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then own keys: an override, not a repeat
                    continue
                if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: the constructor refuses it
                    continue
                key = self.construct_object(key_node)
                dotted, line = f"{where}.{key}" if where else str(key), key_node.start_mark.line + 1
                if key in lines:
                    raise _DuplicateKey(dotted, lines[key], line)
                lines[key] = line
                self._unique_keys(value_node, dotted, visited)


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found; run from the project root or pass --params PATH")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as error:
        raise PipelineError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {error}") from None
    if not data:
        raise PipelineError(f"{path} is empty; restore it (git checkout {path}) or write at least the keys "
                            "you change from the shipped params.yaml")
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must be a mapping of keys to values, not a {type(data).__name__}")
    return parse_params(data, str(path))
