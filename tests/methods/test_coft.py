"""CoFT / CoFT+: the dual-prompt loss and cleanliness rule by their formulas, the phases' effect on the
image tower, the momentum encoder's EMA and queue, and the class-description file."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.pixels import PixelSpec
from pipeline.clip.prompts import PromptLearner, read_descriptions
from pipeline.config.params import parse_params
from pipeline.core.candidates import Candidates
from pipeline.core.errors import PipelineError
from pipeline.core.pool import Pool
from pipeline.methods.catalog import build_method
from pipeline.training.learners import make_learner_factory
from pipeline.training.loop import fit_prompt, run_method
from pipeline.training.losses import build_loss
from pipeline.training.momentum import MomentumContrast
from pipeline.training.visual import VisualLearner

NAMES = ["red circle", "blue circle", "red square", "blue square"]
DEVICE = torch.device("cpu")


def test_dual_loss_is_ce_on_the_positive_half_plus_the_yes_no_terms():
    weights = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    logits = torch.randn(2, 8, generator=torch.Generator().manual_seed(0)) * 3
    loss = build_loss("dual", weights, negative_weight=0.5, seed=7)
    value = loss(logits, torch.arange(2))
    other = (torch.tensor([1, 0]) + torch.randint(1, 4, (2,), generator=torch.Generator().manual_seed(7))) % 4
    positive, negative = logits[:, :4], logits[:, 4:]
    rows, labels = torch.arange(2), torch.tensor([1, 0])
    yes = -F.log_softmax(torch.stack([positive[rows, labels], negative[rows, labels]], 1), 1)[:, 0].mean()
    no = -F.log_softmax(torch.stack([positive[rows, other], negative[rows, other]], 1), 1)[:, 1].mean()
    expected = F.cross_entropy(positive, labels) + 0.5 * (yes + no)
    assert torch.allclose(value, expected, atol=1e-6)
    assert (other != labels).all()  # the "no" label is always a wrong one


def test_dual_loss_with_every_negative_averages_no_over_the_other_classes():
    weights = torch.tensor([[0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    logits = torch.randn(2, 6, generator=torch.Generator().manual_seed(1)) * 3
    value = build_loss("dual", weights, negative_weight=2.0, negatives="all")(logits, torch.arange(2))
    positive, negative = logits[:, :3], logits[:, 3:]
    terms = []
    for row, label in enumerate([1, 2]):
        pair = lambda c: F.log_softmax(torch.stack([positive[row, c], negative[row, c]]), 0)  # noqa: E731
        no = [-pair(c)[1] for c in range(3) if c != label]
        terms.append(-pair(label)[0] + sum(no) / 2)
    expected = F.cross_entropy(positive, torch.tensor([1, 2])) + 2.0 * torch.stack(terms).mean()
    assert torch.allclose(value, expected, atol=1e-6)


def test_warmup_on_the_pool_labels_every_image_with_its_zero_shot_class():
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=40)
    confident = build_method(parse_params({"method": "coft", "pseudolabel": {"k": 3}}))
    pool = build_method(parse_params({"method": "coft", "pseudolabel": {"k": 3}, "coft": {"warmup": "pool"}}))
    assert len(confident.select(probs, 1, None, np.arange(4))) == 12
    chosen = pool.select(probs, 1, None, np.arange(4))
    assert chosen.rows.tolist() == list(range(40)) and (chosen.labels == probs.argmax(axis=1)).all()


def _pool(features, zero_shot, true):
    n = len(features)
    return Pool(features.astype(np.float32), true, np.zeros(n, bool), np.arange(len(NAMES)), len(NAMES),
                zero_shot_weights=zero_shot.astype(np.float32))


def test_clean_means_the_positive_prompt_beats_the_negative_and_agree_also_needs_the_zero_shot_model():
    eye = np.eye(len(NAMES), 8, dtype=np.float32)
    features = np.stack([eye[0], eye[1], eye[2], eye[3]])
    negative = 0.5 * eye
    negative[1] = 2 * eye[1]          # image 1: its label's negative similarity (2) beats the positive (1)
    zero_shot = eye.copy()
    zero_shot[[2, 3]] = zero_shot[[3, 2]]  # the zero-shot model swaps classes 2 and 3
    method = build_method(parse_params({"method": "coft", "coft": {"cofilter": "agree"}}))
    pool = _pool(features, zero_shot, np.array([0, 1, 2, 0]))
    weights = np.concatenate([eye, negative])
    phase1 = method.pseudo_label(pool, weights, round_index=2)
    assert phase1.rows.tolist() == [0, 2, 3] and phase1.labels.tolist() == [0, 2, 3]
    analysis = method.analysis(2)
    assert analysis["clean_share"] == 0.75 and analysis["label_accuracy"] == 0.75
    assert analysis["clean_precision"] == pytest.approx(2 / 3) and analysis["clean_recall"] == pytest.approx(2 / 3)
    phase2 = method.pseudo_label(pool, weights, round_index=3)  # co-filter: zero-shot disagrees on 2 and 3
    assert phase2.rows.tolist() == [0] and method.analysis(3)["kept_share"] == 0.25
    clean_only = build_method(parse_params({"method": "coft", "coft": {"cofilter": "clean"}}))
    assert clean_only.pseudo_label(pool, weights, round_index=3).rows.tolist() == [0, 2, 3]


def test_phase1_share_keeps_the_most_confident_clean_images_per_class():
    # Two images per class; image 0, the strongest of class 0, leans on feature 5, where class 0's
    # negative prompt points: its negative similarity (0.027 + 0.1) beats its positive one (0.09).
    # (Similarities near 0.1, so the posteriors softmax(100 s) stay apart.)
    eye = np.eye(8, dtype=np.float32)
    classes = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    strength = np.array([0.09, 0.08, 0.09, 0.08, 0.07, 0.09, 0.09, 0.06], dtype=np.float32)
    features = strength[:, None] * eye[classes]
    features[0, 5] = 0.05
    positive = eye[:4]
    negative = 0.3 * eye[:4]
    negative[0, 5] = 2.0
    pool = _pool(features, positive, classes)
    weights = np.concatenate([positive, negative])
    method = build_method(parse_params({"method": "coft", "coft": {"phase1_share": 0.5}}))
    chosen = method.pseudo_label(pool, weights, round_index=2)   # K = int(0.5 · 8 / 4) = 1 per class
    assert chosen.rows.tolist() == [1, 2, 5, 6] and chosen.labels.tolist() == [0, 1, 2, 3]
    assert method.analysis(2)["clean_share"] == 7 / 8 and method.analysis(2)["kept_share"] == 0.5
    everything = build_method(parse_params({"method": "coft"})).pseudo_label(pool, weights, round_index=2)
    assert everything.rows.tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_phase_one_leaves_the_tower_alone_and_phase_two_changes_it(tiny_clip):
    rng = np.random.default_rng(0)
    store = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    spec = PixelSpec.from_preprocess(tiny_clip.preprocess)
    with torch.no_grad():
        frozen = F.normalize(tiny_clip.model.encode_image(spec.normalise(torch.from_numpy(store))), dim=-1).numpy()
    text = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a")
    with torch.no_grad():
        zero_shot = text().numpy()
    pool = _pool(frozen, zero_shot, np.arange(24) % len(NAMES))
    pool.images = np.arange(24)
    config = parse_params({"method": "coft", "pseudolabel": {"k": 3},
                           "train": {"epochs": 2, "batch_size": 8, "tower_lr": 1e-3}})
    method = build_method(config)
    pretrained = copy.deepcopy(tiny_clip.model.visual.state_dict())
    factory = make_learner_factory(config, tiny_clip, NAMES, zero_shot, store, DEVICE)
    learners = []

    def make(spec):
        learners.append(factory(0, spec))
        return learners[-1]
    first = method.pseudo_label(pool, zero_shot)
    result = run_method(method, make, pool, zero_shot, first, 0, DEVICE)
    assert len(result.rounds) == 3 and result.class_weights.shape == zero_shot.shape
    assert set(result.rounds[1].analysis) >= {"clean_precision", "clean_recall"}
    for name, value in tiny_clip.model.visual.state_dict().items():
        assert torch.equal(value, pretrained[name]), name  # the shared tower: never touched
    # Each phase's learner, trained on the same labelled images: only phase 2 moves tower weights.
    targets = Candidates.single(np.arange(24), np.arange(24) % len(NAMES), len(NAMES), np.ones(24))
    dual = learners[1]().detach().numpy()
    for round_index in (2, 3):
        learner = factory(0, method.learner_spec(round_index, dual))
        fit_prompt(learner, method.loss_terms(pool, targets, round_index), config.train, 0, DEVICE)
        tower = learner.visual.visual
        changed = [n for n, v in tower.state_dict().items() if not torch.equal(v, pretrained[n])]
        if round_index == 2:
            assert changed == [] and tower is tiny_clip.model.visual and learner.visual.adapter is not None
            assert learner.text.negative.ctx.requires_grad
        else:
            assert tower is not tiny_clip.model.visual and learner.visual.adapter is None
            assert len(changed) > 0.5 * len(pretrained)  # the tower itself trained
            assert torch.equal(learner(), torch.from_numpy(dual))  # against phase 1's prompts, held fixed


def test_momentum_encoder_is_the_ema_of_the_online_one_and_the_queue_takes_the_keys(tiny_clip):
    online = VisualLearner(copy.deepcopy(tiny_clip.model.visual), full_finetune=True)
    contrast = MomentumContrast(online, queue_size=5, momentum=0.9, temperature=0.1)
    before = [p.detach().clone() for p in contrast.encoder.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    spec = PixelSpec.from_preprocess(tiny_clip.preprocess)
    images = spec.normalise(torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)))
    query = F.normalize(online(images), dim=-1)
    loss = contrast.loss(query, images)
    with torch.no_grad():
        keys = F.normalize(contrast.encoder(images), dim=-1)
        logits = torch.cat([(query * keys).sum(1, keepdim=True), query @ contrast.queue.T], 1) / 0.1
    assert torch.allclose(loss, F.cross_entropy(logits, torch.zeros(3, dtype=torch.long)), atol=1e-5)
    contrast.update(online)
    for moving, old, current in zip(contrast.encoder.parameters(), before, online.parameters()):
        assert torch.allclose(moving, 0.9 * old + 0.1 * current, atol=1e-6)
    assert torch.allclose(contrast.queue[:3], keys, atol=1e-6) and int(contrast.pointer) == 3
    assert not any(p.requires_grad for p in contrast.encoder.parameters())


def test_descriptions_are_validated_and_averaged_into_the_positive_prompt(tiny_clip, tmp_path):
    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({name: ["round"] for name in NAMES[:-1]}))
    with pytest.raises(PipelineError, match=r"no descriptions for \['blue square'\]"):
        read_descriptions(str(path), NAMES)
    path.write_text(json.dumps({**{name: ["round"] for name in NAMES}, "green star": ["pointy"]}))
    with pytest.raises(PipelineError, match=r"unknown classes \['green star'\]"):
        read_descriptions(str(path), NAMES)
    path.write_text(json.dumps({**{name: ["round"] for name in NAMES}, "red circle": "round"}))
    with pytest.raises(PipelineError, match="'red circle' must be a list"):
        read_descriptions(str(path), NAMES)
    with pytest.raises(PipelineError, match="does not exist"):
        read_descriptions(str(tmp_path / "missing.json"), NAMES)

    phrases = [["which is round", "coloured red"], ["which is round"], ["which has corners"], []]
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, NAMES, ctx_init="a photo of a",
                            descriptions=phrases)
    with torch.no_grad():
        weights = learner()
        for c, name in enumerate(NAMES):
            prompts = [f"a photo of a {name}."] + [f"a photo of a {name}, {p}." for p in phrases[c]]
            texts = F.normalize(tiny_clip.model.encode_text(tiny_clip.tokenizer(prompts)), dim=-1)
            assert torch.allclose(weights[c], F.normalize(texts.mean(0), dim=0), atol=1e-5), name


def test_finetune_epochs_sets_only_phase_twos_recipe():
    method = build_method(parse_params({"method": "coft_plus", "coft": {"finetune_epochs": 5, "iterations": 2}}))
    epochs = [method.round_recipe(r).epochs for r in range(1, 6)]
    assert epochs == [50, 50, 5, 50, 5]
    assert method.round_recipe(3).warmup_epochs == 1
    assert build_method(parse_params({"method": "coft"})).round_recipe(3).epochs == 50
