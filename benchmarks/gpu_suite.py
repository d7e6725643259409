"""The GPU benchmark suite's arms and its extrapolation of a full AiR run on Flowers102.

Run through `benchmarks/gpu_suite.sh` (it adds the time budget, restarts after a crashed arm and
always ends with the extrapolation); by hand:

    python benchmarks/gpu_suite.py run --out results/gpu_suite [--toy] [--arms a,b] [--resume]
    python benchmarks/gpu_suite.py extrapolate --out results/gpu_suite [--toy]

Every arm writes `<out>/<arm>.json` as soon as it ends: `{"arm", "status": "ok" | "error",
"figures": {...}, "seconds", "config"}` (with "error" and "traceback" instead of figures when it
failed); the suite goes on after a failed arm. A file still saying "running" belongs to an arm whose
process died or ran out of the time budget; the next `run --resume` or `extrapolate` marks it
"error", and `extrapolate` writes "not_run" for an asked-for arm that never started.

Random weights only (no download): the cost of a step does not depend on the weights. The arms reuse
the other benchmarks: `generation_throughput.random_weights_model` (SD 1.5 / SD-Turbo-shaped
pipelines, saved once per shape and loaded by both that shape's arms) and `.direct` (images/s),
`adapt_sd.seconds_per_step` (the adapt stage's LoRA step), `feature_throughput.py`'s
`main` (run in-process with arguments), `method_costs.train_seconds` (`fit_prompt`, the real training
loop) and `pipeline.clip.prompts.PromptLearner` (`forward` vs `forward_reference`, eager vs `torch.compile`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

BENCHMARKS = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS.parent), str(BENCHMARKS)]  # `pipeline` and the sibling benchmark scripts

# Flowers102 as the pipeline reads it (pipeline/datasets/flowers102.py: pool = trnid + valid, test = tstid).
FLOWERS = SimpleNamespace(classes=102, pool=2040, test=6149, synthetic_per_class=120)
# docs/real_data.md: adapt.steps 1000, adapt.batch_size 4, adapt.resolution 512; SD-Turbo 1 step.
REAL_DATA_ADAPT_STEPS = 1000
ROUNDS = 10  # pseudolabel.rounds under protocol grip

GPU = SimpleNamespace(
    toy=False, device="cuda", dtype="float16",
    clip="ViT-B-32", clip_weights="random",
    prompt=dict(classes=102, n_ctx=16, batch=32, warmup=10, steps=100, compile_backend="inductor"),
    fit=dict(pseudo_labels=int(0.8 * FLOWERS.pool), epochs=1),        # GRIP's last round: 1,632 kept rows
    features=dict(images=2048, batch_size=256, num_workers=min(8, os.cpu_count() or 1), repeats=2, fp16_batch=256),
    generator={"sd-turbo": None, "sd15": None},                        # None: the random-weights shape
    adapt=dict(resolution=512, batch=4, steps=25, warmup=3, images=16),
    generate={"sd-turbo": dict(size=512, steps=1, guidance=0.0, images=32, batch=8),
              "sd15": dict(size=512, steps=25, guidance=7.5, images=16, batch=8)},
)
TOY = SimpleNamespace(
    toy=True, device="cpu", dtype="float32",
    clip="tiny-clip", clip_weights="random",
    prompt=dict(classes=102, n_ctx=16, batch=32, warmup=1, steps=2, compile_backend="eager"),
    fit=dict(pseudo_labels=64, epochs=1),
    features=dict(images=64, batch_size=32, num_workers=0, repeats=1, fp16_batch=0),
    generator={"sd-turbo": "tiny-random", "sd15": "tiny-random"},
    adapt=dict(resolution=32, batch=2, steps=3, warmup=1, images=4),
    generate={"sd-turbo": dict(size=32, steps=1, guidance=0.0, images=4, batch=2),
              "sd15": dict(size=32, steps=2, guidance=7.5, images=4, batch=2)},
)

# Run order: cheap and most-asked-for first, torch.compile last (its compile time is the unknown).
ARMS = ["prompt_forward_eager", "prompt_reference_eager", "prompt_fit", "features_vitb32",
        "generate_sd-turbo", "adapt_sd-turbo", "generate_sd15", "adapt_sd15",
        "prompt_forward_compiled", "prompt_reference_compiled"]


# --- shared helpers ----------------------------------------------------------------------------------

def _device(cfg):
    import torch

    return torch.device(cfg.device)


def _dtype(cfg):
    import torch

    return torch.float32 if cfg.device == "cpu" else getattr(torch, cfg.dtype)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device) -> dict:
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)}


_CLIPS: dict = {}


def _clip(cfg):
    from pipeline.clip.models import load_clip

    if cfg.clip not in _CLIPS:
        _CLIPS.clear()
        _CLIPS[cfg.clip] = load_clip(cfg.clip, cfg.clip_weights, _device(cfg))
    return _CLIPS[cfg.clip]


def _generator(cfg, kind: str) -> tuple[str, float]:
    """The generator a diffusion arm loads: `tiny-random` (toy), or the SD-shaped random-weights
    folder `generation_throughput.random_weights_model` saves (built once per shape; seconds it took)."""
    if cfg.generator[kind]:
        return cfg.generator[kind], 0.0
    folder = Path(cfg.scratch) / kind
    if (folder / ".complete").exists():
        return str(folder), 0.0
    from generation_throughput import random_weights_model

    started = time.perf_counter()
    random_weights_model(kind, folder, _dtype(cfg))
    (folder / ".complete").touch()
    return str(folder), time.perf_counter() - started


# --- prompt training (arm 4) --------------------------------------------------------------------------

def _prompt_arm(cfg, path: str, compiled: bool) -> dict:
    """Steps/s of one prompt-training step: the text tower over the C prompts (`forward` or
    `forward_reference`), logits against `batch` random unit image features, cross-entropy, backward,
    Adam on `learner.ctx`. GPU: fp16 autocast; the function from text tower to loss is what compiles."""
    import torch
    import torch.nn.functional as F

    from pipeline.clip.prompts import PromptLearner
    from pipeline.core.candidates import LOGIT_SCALE
    from pipeline.datasets.benchmark import shipped_class_names

    p, device = cfg.prompt, _device(cfg)
    clip = _clip(cfg)
    names = shipped_class_names("flowers102")[:p["classes"]]
    names += [f"class {i}" for i in range(len(names), p["classes"])]
    learner = PromptLearner(clip.model, clip.tokenizer, names, p["n_ctx"], ctx_init="").to(device)
    generator = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(p["batch"], clip.model.visual.output_dim, generator=generator), dim=-1).to(device)
    labels = torch.randint(0, len(names), (p["batch"],), generator=generator).to(device)
    optimizer = torch.optim.Adam([learner.ctx], lr=0.01)
    text_tower = learner.forward if path == "forward" else learner.forward_reference
    autocast = (torch.autocast("cuda", dtype=_dtype(cfg)) if device.type == "cuda" and cfg.dtype != "float32"
                else contextlib.nullcontext())

    def loss_of() -> torch.Tensor:
        with autocast:
            logits = LOGIT_SCALE * features @ text_tower().T
        return F.cross_entropy(logits.float(), labels)

    if compiled:
        torch._dynamo.reset()
        loss_of = torch.compile(loss_of, backend=p["compile_backend"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of().backward()
        optimizer.step()

    figures = {}
    started = time.perf_counter()
    step()  # compiles forward and backward when compiled
    _sync(device)
    if compiled:
        figures["compile_s"] = round(time.perf_counter() - started, 2)
    for _ in range(p["warmup"]):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(p["steps"]):
        step()
    _sync(device)
    seconds = (time.perf_counter() - started) / p["steps"]
    figures.update(steps_per_s=round(1 / seconds, 3), ms_per_step=round(1000 * seconds, 3),
                   shared_prefix=bool(learner.shared_prefix) if path == "forward" else False,
                   prompt_tokens=int(learner.tokens.shape[1]), classes=len(names),
                   precision="fp16 autocast" if autocast.__class__ is not contextlib.nullcontext else "fp32",
                   **_peak_gib(device))
    if compiled:
        figures["compile_backend"] = p["compile_backend"]
    return figures


def arm_prompt_fit(cfg) -> dict:
    """`fit_prompt` (the pipeline's training loop, the model's own dtype: fp32) at GRIP's recipe:
    one epoch over the last round's kept pseudo-labels (batch 16, SGD); seconds per optimiser step."""
    from method_costs import train_seconds

    from pipeline.config.params import TrainParams
    from pipeline.config.protocols import PROTOCOLS
    from pipeline.datasets.benchmark import shipped_class_names

    recipe = {key: value for key, value in PROTOCOLS["grip"].recipe.items() if key not in ("augment", "crop_scale")}
    recipe.update(epochs=cfg.fit["epochs"], warmup_epochs=0)
    recipe = TrainParams(**recipe)
    clip, device, n = _clip(cfg), _device(cfg), cfg.fit["pseudo_labels"]
    names = shipped_class_names("flowers102")
    train_seconds(clip, names, 4 * recipe.batch_size, recipe, device)  # warm-up (kernels, caches)
    seconds = train_seconds(clip, names, n, recipe, device)
    steps = recipe.epochs * math.ceil(n / recipe.batch_size)
    return {"s_per_step": round(seconds / steps, 6), "steps_per_s": round(steps / seconds, 3), "steps": steps,
            "pseudo_labels": n, "batch_size": recipe.batch_size, "optimizer": recipe.optimizer, "precision": "fp32",
            "classes": len(names), **_peak_gib(device)}


# --- feature extraction (arm 3) -----------------------------------------------------------------------

def arm_features(cfg) -> dict:
    """`feature_throughput.py` in-process (the features stage's path, fp32 as the stage runs, from PNG
    bytes through DataLoader workers, against bare `encode_image`), plus on GPU a bare fp16-autocast
    floor on random 224 px tensors."""
    import feature_throughput
    import torch

    f, device = cfg.features, _device(cfg)
    argv = ["feature_throughput.py", "--arch", cfg.clip, "--pretrained", cfg.clip_weights, "--images", str(f["images"]),
            "--batch-size", str(f["batch_size"]), "--num-workers", str(f["num_workers"]), "--device", cfg.device,
            "--repeats", str(f["repeats"])]
    text = io.StringIO()
    saved = sys.argv, torch.backends.cudnn.allow_tf32
    try:
        # Its last check wants both paths' embeddings within 1e-4; TF32 rounding in the patch-embedding
        # convolution (on by default) could break that on inputs differing by 1e-7. One conv of ViT-B/32:
        # no measurable cost.
        sys.argv, torch.backends.cudnn.allow_tf32 = argv, False
        with contextlib.redirect_stdout(text):
            feature_throughput.main()
    finally:
        sys.argv, torch.backends.cudnn.allow_tf32 = saved
    printed = text.getvalue()
    print(printed.rstrip())
    rate = lambda label: float(re.search(label + r"\s+([0-9.]+) images/s", printed).group(1))  # noqa: E731
    figures = {"bare_fp32_images_per_s": rate("bare encode_image on decoded tensors"),
               "pipeline_images_per_s": rate("encode_image_shards from PNG bytes"),
               "images": f["images"], "batch_size": f["batch_size"], "num_workers": f["num_workers"],
               "precision": "fp32 (the features stage's)"}
    if device.type == "cuda" and f["fp16_batch"]:
        clip = _clip(cfg)
        size = clip.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        batch = torch.randn(f["fp16_batch"], 3, size, size, device=device)
        with torch.inference_mode(), torch.autocast("cuda", dtype=_dtype(cfg)):
            for _ in range(3):
                clip.model.encode_image(batch)
            _sync(device)
            started, repeats = time.perf_counter(), 10
            for _ in range(repeats):
                clip.model.encode_image(batch)
            _sync(device)
        figures["bare_fp16_autocast_images_per_s"] = round(repeats * len(batch) / (time.perf_counter() - started), 1)
    return {**figures, **_peak_gib(device)}


# --- generation (arm 2) and adaptation (arm 1) --------------------------------------------------------

def _generate_arm(cfg, kind: str) -> dict:
    """`generation_throughput.direct` (the pipeline object called batch after batch, model loaded, one
    warm-up batch) and the PNG encoding the generate stage adds per image (`generation._png`)."""
    import numpy as np
    from generation_throughput import direct
    from PIL import Image

    from pipeline.config.params import GenerateParams
    from pipeline.diffusion.generate import _png

    g, device, dtype = cfg.generate[kind], _device(cfg), _dtype(cfg)
    model, build_s = _generator(cfg, kind)
    classes = ["pink primrose", "sunflower"]
    params = GenerateParams(model=model, images_per_class=g["images"] // len(classes), size=g["size"],
                            steps=g["steps"], guidance=g["guidance"], batch_size=g["batch"], dtype=cfg.dtype,
                            device=cfg.device)
    images = params.images_per_class * len(classes)
    seconds = direct(params, classes, device, dtype)
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (g["size"], g["size"], 3), dtype=np.uint8)) for _ in range(4)]
    started = time.perf_counter()
    for picture in pictures:
        _png(picture)
    png_s = (time.perf_counter() - started) / len(pictures)
    return {"direct_images_per_s": round(images / seconds, 3), "s_per_image": round(seconds / images, 5),
            "png_s_per_image": round(png_s, 5), "images": images, "size": g["size"], "steps": g["steps"],
            "guidance": g["guidance"], "batch_size": g["batch"], "build_s": round(build_s, 1), **_peak_gib(device)}


def _adapt_arm(cfg, kind: str) -> dict:
    """`adapt_sd.seconds_per_step` (the adapt stage's LoRA step on random PNGs, median after warm-up)
    on this generator shape."""
    from adapt_sd import seconds_per_step

    from pipeline.diffusion.loading import load_generator

    a, device = cfg.adapt, _device(cfg)
    model, build_s = _generator(cfg, kind)
    pipe = load_generator(model, device, _dtype(cfg))
    steady = seconds_per_step(pipe, device, a["resolution"], a["batch"], a["steps"], a["warmup"], a["images"])
    return {"s_per_step": round(steady, 5), "steps_per_s": round(1 / steady, 3), "batch_size": a["batch"],
            "resolution": a["resolution"], "steps_timed": a["steps"], "build_s": round(build_s, 1), **_peak_gib(device)}


ARM_FUNCTIONS = {
    "prompt_forward_eager": lambda cfg: _prompt_arm(cfg, "forward", compiled=False),
    "prompt_reference_eager": lambda cfg: _prompt_arm(cfg, "reference", compiled=False),
    "prompt_fit": arm_prompt_fit,
    "features_vitb32": arm_features,
    "generate_sd-turbo": lambda cfg: _generate_arm(cfg, "sd-turbo"),
    "adapt_sd-turbo": lambda cfg: _adapt_arm(cfg, "sd-turbo"),
    "generate_sd15": lambda cfg: _generate_arm(cfg, "sd15"),
    "adapt_sd15": lambda cfg: _adapt_arm(cfg, "sd15"),
    "prompt_forward_compiled": lambda cfg: _prompt_arm(cfg, "forward", compiled=True),
    "prompt_reference_compiled": lambda cfg: _prompt_arm(cfg, "reference", compiled=True),
}
assert list(ARM_FUNCTIONS) == ARMS


# --- running and recording ----------------------------------------------------------------------------

def _write(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


DIED = "the arm did not finish: its process died or ran out of the suite's time budget"


def _settle(path: Path) -> dict | None:
    """An arm's record; one left 'running' by a dead process is rewritten as an error."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("status") == "running":
        record.update(status="error", error=DIED)
        _write(path, record)
    return record


def _print_record(record: dict) -> None:
    name, status = record["arm"], record["status"]
    if status == "ok":
        figures = ", ".join(f"{key}={value}" for key, value in record["figures"].items())
        print(f"[{name}] ok in {record['seconds']:.1f} s: {figures}", flush=True)
    else:
        print(f"[{name}] {status}: {record.get('error')}", flush=True)


def run(cfg, out: Path, arms: list[str], resume: bool) -> None:
    import torch

    device = _device(cfg)
    if cfg.device == "cpu":
        from pipeline.runtime.devices import fixed_threads  # OMP_NUM_THREADS=2,1 or a bad PIPELINE_THREADS handled

        torch.set_num_threads(fixed_threads() or torch.get_num_threads())
    if not resume:
        for name in arms:
            (out / f"{name}.json").unlink(missing_ok=True)
        (out / "extrapolation.json").unlink(missing_ok=True)
    try:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    except Exception as error:  # noqa: BLE001 - no such device: every arm will say so in its file
        where = f"{cfg.device} unusable ({type(error).__name__}: {str(error)[:200]})"
    print(f"gpu suite: {'TOY (CPU fp32, tiny models: figures meaningless)' if cfg.toy else cfg.device + ' ' + cfg.dtype}"
          f" on {cfg.device}, torch {torch.__version__}, {where}", flush=True)
    for name in arms:
        path = out / f"{name}.json"
        previous = _settle(path)
        if previous is not None:
            print(f"[{name}] already recorded ({previous['status']}), skipped", flush=True)
            continue
        config = {"device": cfg.device, "dtype": cfg.dtype, "toy": cfg.toy}
        _write(path, {"arm": name, "status": "running", "config": config})
        started = time.perf_counter()
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            record = {"arm": name, "status": "ok", "figures": ARM_FUNCTIONS[name](cfg)}
        except Exception as error:  # noqa: BLE001 - one arm's failure is recorded, the suite goes on
            record = {"arm": name, "status": "error", "error": f"{type(error).__name__}: {str(error)[:2000]}",
                      "traceback": traceback.format_exc()[-6000:]}
        record.update(seconds=round(time.perf_counter() - started, 2), config=config)
        _write(path, record)
        _print_record(record)
        if name.startswith("adapt_"):  # both arms of this shape are done: free the disk
            import shutil

            shutil.rmtree(Path(cfg.scratch) / name.removeprefix("adapt_"), ignore_errors=True)
        import gc

        gc.collect()
        with contextlib.suppress(Exception):
            if device.type == "cuda":
                torch.cuda.empty_cache()


# --- extrapolation ------------------------------------------------------------------------------------

def _figures(out: Path, name: str) -> dict | None:
    record = _settle(out / f"{name}.json")
    return record["figures"] if record and record["status"] == "ok" else None


def _why(out: Path, *names: str) -> str:
    """Why these arms have no figures: each one's status (not run, error, unfinished)."""
    reasons = []
    for name in names:
        record = _settle(out / f"{name}.json")
        reasons.append(f"{name} {'not run' if record is None else record['status'].replace('_', ' ')}")
    return ", ".join(reasons)


def _prompt_summary(out: Path) -> None:
    """One line comparing the prompt-step arms: shared-prefix vs reference, compiled vs eager."""
    ms = {name: f["ms_per_step"] for name in ARMS if name.startswith("prompt_") and name != "prompt_fit"
          and (f := _figures(out, name)) is not None}
    if not ms:
        return
    parts = [f"{name.removeprefix('prompt_')} {value:.2f} ms" for name, value in ms.items()]
    for mode in ("eager", "compiled"):
        new, old = ms.get(f"prompt_forward_{mode}"), ms.get(f"prompt_reference_{mode}")
        if new and old:
            parts.append(f"shared prefix {old / new:.2f}x faster than reference ({mode})")
    for path in ("forward", "reference"):
        eager, compiled = ms.get(f"prompt_{path}_eager"), ms.get(f"prompt_{path}_compiled")
        if eager and compiled:
            parts.append(f"torch.compile {eager / compiled:.2f}x on {path}")
    print("prompt step (forward over the C prompts + loss + backward + Adam): " + "; ".join(parts), flush=True)


def grip_steps(unlabeled: int, classes: int) -> tuple[int, list[int]]:
    """Optimiser steps of GRIP's 10 rounds: round t trains `epochs` epochs of ceil(n_t / B) steps on
    n_t = K_t·C pseudo-labels, K_t = GRIP's floor(t·floor(|U|/10)/C), less GRIP's 20% hold-out when K_t ≥ 10."""
    from pipeline.config.protocols import PROTOCOLS
    from pipeline.pseudolabel.rules import grip_k

    grip = PROTOCOLS["grip"]
    ks = [grip_k(t, unlabeled, classes, ROUNDS, grip.k_inner_floor) for t in range(1, ROUNDS + 1)]
    per_round = [grip.recipe["epochs"] * math.ceil(len(grip.kept_rows(k * classes, k)) / grip.recipe["batch_size"])
                 for k in ks]
    return sum(per_round), ks


def extrapolate(out: Path, toy: bool, unlabeled: int, arms: list[str] = ARMS) -> dict:
    """Print and write (`extrapolation.json`) the wall time of a full AiR run on Flowers102 from the
    arms' figures: adapt + generate + features + 10 GRIP rounds, for SD-Turbo and for SD 1.5."""
    from pipeline.config.protocols import PROTOCOLS

    for name in arms:  # an asked-for arm the budget never reached gets its file too
        if not (out / f"{name}.json").exists():
            _write(out / f"{name}.json", {"arm": name, "status": "not_run", "error": "the suite's time budget ran out "
                                          "before this arm started (or its process kept dying)"})
    records = [record for name in ARMS if (record := _settle(out / f"{name}.json")) is not None]
    print("arms: " + ", ".join(f"{record['arm']} {record['status']}" for record in records), flush=True)
    _prompt_summary(out)
    C, per_class = FLOWERS.classes, FLOWERS.synthetic_per_class
    synthetic, real = C * per_class, FLOWERS.pool + FLOWERS.test
    grip = PROTOCOLS["grip"].recipe
    steps, ks = grip_steps(unlabeled, C)
    result: dict = {"toy": toy, "classes": C, "unlabeled": unlabeled, "synthetic_images": synthetic,
                    "real_images": real, "adapt_steps": REAL_DATA_ADAPT_STEPS, "grip_steps": steps, "grip_k": ks}

    def part(key: str, figures: dict | None, cost, why: str) -> tuple[str, float | None, str]:
        """(key, seconds or None, the line): `cost(figures)` gives (seconds, formula)."""
        if figures is None:
            return key, None, f"  {key:<9} not measured ({why})"
        seconds, formula = cost(figures)
        return key, seconds, f"  {key:<9} {formula} = {seconds / 60:.1f} min"

    fit, eager = _figures(out, "prompt_fit"), _figures(out, "prompt_forward_eager")
    step = ({"s": fit["s_per_step"], "source": "fit_prompt at GRIP's recipe, fp32"} if fit else
            {"s": 1 / eager["steps_per_s"], "source": "bare step of prompt_forward_eager: prompt_fit failed"}
            if eager else None)
    shared = [
        part("features", _figures(out, "features_vitb32"),
             lambda f: ((real + synthetic) / f["pipeline_images_per_s"],
                        f"({FLOWERS.pool:,} + {FLOWERS.test:,} real + {synthetic:,} synthetic) images / "
                        f"{f['pipeline_images_per_s']:.1f} images/s (features stage path)"),
             _why(out, "features_vitb32")),
        part("GRIP", step,
             lambda f: (steps * f["s"], f"{ROUNDS} rounds x {grip['epochs']} epochs x ceil(n_t / {grip['batch_size']}) "
                                        f"= {steps:,} steps x {f['s']:.5f} s/step ({f['source']})"),
             _why(out, "prompt_fit", "prompt_forward_eager")),
    ]
    lines = [f"Extrapolated wall time of full AiR on Flowers102{' (TOY figures: meaningless)' if toy else ''}: "
             f"C = {C}, |U| = {unlabeled:,} (train+val pool, pipeline/datasets/flowers102.py), "
             f"{FLOWERS.test:,} test, {per_class} synthetic images/class"]
    for kind, label in (("sd-turbo", "generator SD-Turbo, 1 step (docs/real_data.md's setting)"),
                        ("sd15", "generator SD 1.5, 25 steps with guidance, instead")):
        parts = [
            part("adapt", _figures(out, f"adapt_{kind}"),
                 lambda f: (REAL_DATA_ADAPT_STEPS * f["s_per_step"],
                            f"{REAL_DATA_ADAPT_STEPS} steps (batch {f['batch_size']}, {f['resolution']} px) x "
                            f"{f['s_per_step']:.4f} s/step"),
                 _why(out, f"adapt_{kind}")),
            part("generate", _figures(out, f"generate_{kind}"),
                 lambda f: (synthetic * (f["s_per_image"] + f["png_s_per_image"]),
                            f"{C} x {per_class} = {synthetic:,} images x ({f['s_per_image']:.4f} s/image + "
                            f"{f['png_s_per_image']:.4f} s PNG)"),
                 _why(out, f"generate_{kind}")),
        ] + shared
        lines.append(f" {label}:")
        lines += [line for _, _, line in parts]
        if kind == "sd-turbo":
            lines.append("            n_t = K_t x C, less GRIP's 20% hold-out when K_t >= 10; "
                         f"K_t = floor(t x |U| / 10 / C) = {', '.join(map(str, ks))}")
        components = {key: seconds for key, seconds, _ in parts if seconds is not None}
        missing = [key for key, seconds, _ in parts if seconds is None]
        total = sum(components.values())
        lines.append(f"  total     adapt + generate + features + GRIP = {total / 60:.1f} min ({total / 3600:.2f} h)"
                     + (f"; a lower bound: {', '.join(missing)} not measured" if missing else ""))
        result[kind] = {"components_s": components, "missing": missing, "total_s": total}
    lines.append("  not included: loading real weights, the prepare/auxiliary/pseudolabel/evaluate work on cached "
                 "features (seconds), DVC and process start-up; real JPEGs decode slower than the benchmark's PNGs")
    result["total_s"] = result["sd-turbo"]["total_s"]
    result["text"] = "\n".join(lines)
    print(result["text"], flush=True)
    _write(out / "extrapolation.json", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "extrapolate"])
    parser.add_argument("--out", default=os.environ.get("OUT") or "results/gpu_suite")
    parser.add_argument("--toy", action="store_true", default=os.environ.get("TOY") == "1",
                        help="CPU fp32, tiny-random generator and tiny-clip, 32 px, 1-3 steps (a smoke run)")
    parser.add_argument("--device", default=None, help="override the preset's device (cuda, cuda:1, cpu)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS))
    parser.add_argument("--resume", action="store_true", help="keep the arms already recorded under --out")
    parser.add_argument("--scratch", default=None, help="where the random-weights generators are saved (GBs)")
    parser.add_argument("--unlabeled", type=int, default=FLOWERS.pool, help="|U| of the extrapolation")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default: inductor; toy: eager)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.command == "extrapolate":
        extrapolate(out, args.toy, args.unlabeled, [name.strip() for name in args.arms.split(",") if name.strip()])
        return
    cfg = SimpleNamespace(**vars(TOY if args.toy else GPU))
    if args.device:
        cfg.device = args.device
    if args.compile_backend:
        cfg.prompt = {**cfg.prompt, "compile_backend": args.compile_backend}
    import tempfile

    cfg.scratch = args.scratch or tempfile.mkdtemp(prefix="gpu-suite-")
    arms = [name.strip() for name in args.arms.split(",") if name.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {ARMS}")
    run(cfg, out, arms, args.resume)


if __name__ == "__main__":
    main()
