"""Benchmark: universal perturbation training with the real TAESD (SD 1.x) encoder.

Not a test. Trains in stages that isolate where the gain over random ±eps signs comes from:

1. ``plain``: the issue's calibration recipe, encoder objective (grey target), sign-PGD,
   100 steps, 128x128, 32 training photos, no EOT.
2. ``latent-small``: the same data and steps with the untargeted ``latent`` objective
   (random start): the effect of the objective alone.
3. ``main``: ``latent`` objective at --size (256) on --max-photos photos for --steps steps
   (optionally with EOT, --robust): the effect of size, photos and steps.

Each stage prints the protection table (spdesk.core.evaluate) on held-out photos with and without
JPEG --jpeg, against random uniform noise, random signs and none, plus seconds per step. The main
stage also prints the table on training photos and the transfer to TAEF2 (not trained on).
With CUDA available it also measures SD 1.5 AutoencoderKL (random weights) encoder
forward+backward images/s and peak memory at 512x512 (--cuda-speed).

    nice -n 10 python benchmarks/bench_train.py --threads 2 > bench_train.log 2>&1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.events import Event
from spdesk.core.events.training import ValidationReport
from spdesk.core.train import (
    TrainConfig,
    find_photos,
    split_photos,
    train_universal,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def on_event(event: Event) -> None:
    if isinstance(event, ValidationReport):
        log(
            f"  step {event.step}: held-out latent distortion {event.distortion:.3f} "
            f"(random signs {event.sign_distortion:.3f}, uniform {event.uniform_distortion:.3f}, "
            f"gain {event.gain_over_sign:.2f}x)"
        )


def held_out_paths(config: TrainConfig, count: int) -> tuple[list[Path], list[Path]]:
    photos = find_photos(Path(config.photos))
    train, val = split_photos(photos, config.split, config.seed, config.max_photos)
    return train[:count], val[:count]


def table_for(
    encoder: Encoder, paths: list[Path], size: int, delta: np.ndarray, eps: float, jpeg: int
) -> str:
    # Imported here: the evaluation needs torchmetrics, which --cuda-speed alone does not.
    from spdesk.core.evaluate import evaluate_protection, load_eval_photos

    photos, _skipped = load_eval_photos(paths, size)
    table = evaluate_protection(photos, encoder, delta, eps, jpeg_quality=jpeg)
    return table.format() + "\n" + json.dumps(table.gains_over_sign())


def stage(name: str, config: TrainConfig, encoder: Encoder, args: argparse.Namespace) -> np.ndarray:
    log(f"=== stage {name}: {json.dumps(dataclasses.asdict(config))}")
    result = train_universal(config, encoder=encoder, on_event=on_event)
    log(f"{name}: {result.seconds_per_step:.2f} s/step over {config.steps} steps")
    _train_paths, val_paths = held_out_paths(config, args.eval_photos)
    print(f"--- {name}: held-out photos ({len(val_paths)})")
    print(table_for(encoder, val_paths, config.size, result.delta, config.eps, args.jpeg))
    out = Path(args.out_dir) / f"{name}.npy"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.delta)
    return result.delta


def load_main(spec: str) -> np.ndarray:
    """A saved main-stage delta (.npy), or the perturbation bundled with spdesk."""
    if spec == "bundled":
        from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

        return load_perturbation(bundled_perturbation_path()).delta
    return np.load(spec)


def finetune_stage(
    encoder: Encoder, delta: np.ndarray, paths: list[Path], args: argparse.Namespace
) -> None:
    """Per-photo fine-tuning from the universal delta on held-out photos (FineTuner)."""
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.evaluate import (
        candidate_deltas,
        evaluate_protected,
        load_eval_photos,
        protect_with,
    )
    from spdesk.core.finetune import FineTuner
    from spdesk.core.perturbation import Perturbation

    photos, _skipped = load_eval_photos(paths, args.size)
    universal = Perturbation(delta=delta, eps=args.eps)
    tuner = FineTuner(
        universal,
        encoder,
        steps=args.finetune_steps,
        objective=args.finetune_objective,
        options=ApplyOptions(working_size=args.size),
        step_size=args.eps / 4,
    )
    start = time.perf_counter()
    tuned = np.stack([tuner.protect(photo) for photo in photos])
    per_photo = (time.perf_counter() - start) / len(photos)
    log(f"fine-tune: {args.finetune_steps} steps, {per_photo:.2f} s/photo at {args.size}px")
    if args.finetune_batch > 1:
        finetune_speed(tuner, list(photos), args.finetune_batch)
    protected = {"perturbation": tuned}
    for name, candidate in candidate_deltas(delta, args.eps).items():
        label = "universal" if name == "perturbation" else name
        protected[label] = protect_with(photos, candidate)
    table = evaluate_protected(photos, protected, encoder, args.eps, jpeg_quality=args.jpeg)
    print(f"--- fine-tuned per photo ({args.finetune_objective}), held-out photos ({len(photos)})")
    print(table.format() + "\n" + json.dumps(table.gains_over_sign()))


FIGURES: dict[str, Any] = {}  # what --json writes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory since :func:`reset_peak` (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def finetune_speed(tuner: Any, photos: list[np.ndarray], batch: int) -> float:
    """Seconds per photo of per-photo fine-tuning with ``batch`` photos per pass (and the
    peak GPU memory on CUDA); the photos must share one size."""
    tuner.batch_size = batch
    device = tuner.encoder.device
    reset_peak(device)
    start = time.perf_counter()
    tuner.protect_batch(photos)
    sync(device)
    per_photo = (time.perf_counter() - start) / len(photos)
    peak = peak_gib(device)
    memory = f", peak {peak:.2f} GiB" if peak is not None else ""
    size = "x".join(map(str, photos[0].shape[:2]))
    log(
        f"fine-tune {tuner.steps} steps, batches of {batch}: {per_photo:.3f} s/photo "
        f"({len(photos)} photos {size}{memory})"
    )
    FIGURES.setdefault("finetune", []).append(
        {"steps": tuner.steps, "batch": batch, "s_per_photo": per_photo, "peak_gib": peak}
    )
    return per_photo


def cuda_finetune_speed(
    vae: Any, device: torch.device, size: int, args: argparse.Namespace
) -> None:
    """Per-photo fine-tuning (--finetune-steps) with SD 1.5's VAE architecture at ``size`` px,
    one photo per pass against ``--finetune-batch`` photos per pass."""
    import tempfile

    from spdesk.core.apply import ApplyOptions
    from spdesk.core.finetune import FineTuner
    from spdesk.core.perturbation import Perturbation

    with tempfile.TemporaryDirectory() as folder:
        vae.save_pretrained(folder)
        encoder = load_encoder(folder, str(device))
    rng = np.random.default_rng(0)
    delta = rng.choice([-1.0, 1.0], (3, 128, 128)).astype(np.float32) * args.eps / 255
    tuner = FineTuner(
        Perturbation(delta=delta, eps=args.eps),
        encoder,
        steps=args.finetune_steps,
        objective="latent",
        options=ApplyOptions(working_size=size),
    )
    batch = max(2, args.finetune_batch)
    photos = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2 * batch)]
    finetune_speed(tuner, photos[:2], 1)
    finetune_speed(tuner, photos, batch)


_MEMORY_CHILD = """
import sys, time
from pathlib import Path
import torch
from diffusers import AutoencoderKL
checkpointing, batch, size = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
vae = AutoencoderKL(
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
).requires_grad_(False)
if checkpointing:
    from spdesk.core.encoders.sd15 import checkpoint_blocks
    checkpoint_blocks(vae.encoder)
def peak():
    status = Path("/proc/self/status").read_text()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
before = peak()
x = torch.rand(batch, 3, size, size, requires_grad=True)
start = time.perf_counter()
vae.encode(x * 2 - 1).latent_dist.mean.pow(2).mean().backward()
print(peak() - before, time.perf_counter() - start)
"""


def cpu_checkpointing_memory(args: argparse.Namespace) -> None:
    """Peak memory of one SD 1.5 VAE encoder forward+backward on the CPU (fresh processes),
    with and without activation checkpointing: the effect --checkpointing has on a GPU."""
    import subprocess
    import sys

    batch, size = 2, args.size
    for checkpointing in (False, True):
        argv = [sys.executable, "-c", _MEMORY_CHILD, str(int(checkpointing)), str(batch), str(size)]
        result = subprocess.run(argv, capture_output=True, text=True, check=True)
        extra_mib, seconds = map(float, result.stdout.split())
        log(
            f"SD1.5 VAE enc fwd+bwd on CPU, batch {batch} at {size}px, checkpointing "
            f"{checkpointing}: +{extra_mib:.0f} MiB peak over the loaded model, {seconds:.1f} s"
        )


def finetune_step_seconds(args: argparse.Namespace) -> None:
    """Seconds per fine-tuning step (4 steps less 1 step, over 3) on a 512x512 photo for SD 1.5's
    VAE architecture (random weights) and the real TAESD (the app's time estimates), and on a
    24 MP photo for TAESD."""
    import tempfile

    from diffusers import AutoencoderKL

    from spdesk.core.finetune import FineTuner
    from spdesk.core.perturbation import bundled_perturbation_path, load_perturbation

    universal = load_perturbation(bundled_perturbation_path())
    photo = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
        ).save_pretrained(folder)
        encoders = {"sd15": load_encoder(folder, device), "taesd": load_encoder(args.taesd, device)}
    camera = np.random.default_rng(1).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
    cases = [(name, encoder, photo) for name, encoder in encoders.items()]
    cases.append(("taesd", encoders["taesd"], camera))  # working view 512x768 of a 24 MP photo
    for name, encoder, image in cases:
        seconds = {}
        for steps in (1, 4):
            tuner = FineTuner(universal, encoder, steps=steps, objective="encoder")
            start = time.perf_counter()
            tuner.protect(image)
            seconds[steps] = time.perf_counter() - start
        per_step = (seconds[4] - seconds[1]) / 3
        size = "x".join(map(str, image.shape[:2]))
        log(f"fine-tune step, {size} photo, {name} on {device}: {per_step:.2f} s")


def sd15_vae(size: int) -> Any:
    """SD 1.5's AutoencoderKL architecture with random weights (speed does not need weights)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=size,
    )


def cuda_speed(args: argparse.Namespace) -> None:
    """SD 1.5 AutoencoderKL encoder forward+backward w.r.t. the input, random weights, at 512 px
    on CUDA (--smoke: 64 px and one repeat on whatever device is present, to check the code)."""
    if not torch.cuda.is_available() and not args.smoke:
        log("CUDA not available: SD 1.5 VAE GPU speed/memory not measured; CPU memory instead.")
        cpu_checkpointing_memory(args)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = 64 if args.smoke else 512
    vae = sd15_vae(size).to(device)
    vae.requires_grad_(False)
    if args.checkpointing:
        from spdesk.core.encoders.sd15 import checkpoint_blocks

        checkpoint_blocks(vae.encoder)  # as spdesk train --checkpointing does

    def encode(x: torch.Tensor) -> torch.Tensor:
        return vae.encode(x).latent_dist.mean

    shapes = [(1, 1), (8, 8), (8, args.micro_batch)]
    if args.compile:
        shapes = shapes[1:]  # each shape compiles once: batch 1 would be a third compilation
    run = torch.compile(encode) if args.compile else encode
    rows = FIGURES.setdefault("cuda_speed_compiled" if args.compile else "cuda_speed", [])
    for batch, micro in shapes:
        rows.append(encoder_speed(run, device, size, batch, micro, args))
    if not args.compile:
        cuda_finetune_speed(vae, device, size, args)


def encoder_speed(
    encode: Any, device: torch.device, size: int, batch: int, micro: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Images/s and peak memory of ``encode`` forward+backward under bf16 autocast (as spdesk
    runs SD 1.5's VAE on CUDA); the first call (compilation, if any) is timed apart."""
    delta = torch.zeros(3, size, size, device=device, requires_grad=True)
    x = torch.rand(batch, 3, size, size, device=device)

    def one_step() -> None:
        for part in x.split(micro):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                z = encode((part + delta) * 2 - 1)
            z.float().pow(2).mean().backward()

    reset_peak(device)
    start = time.perf_counter()
    one_step()  # warm-up (and compilation)
    sync(device)
    first_s = time.perf_counter() - start
    one_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.cuda_repeats):
        one_step()
    sync(device)
    rate = batch * args.cuda_repeats / (time.perf_counter() - start)
    peak = peak_gib(device)
    memory = f"peak {peak:.2f} GiB" if peak is not None else "peak not measured (CPU)"
    log(
        f"SD1.5 VAE enc fwd+bwd {size}px batch {batch} micro {micro}: {rate:.1f} img/s, "
        f"{memory}, first call {first_s:.1f} s (checkpointing {args.checkpointing}, "
        f"compile {args.compile}, {device})"
    )
    return {
        "batch": batch,
        "micro": micro,
        "images_per_s": rate,
        "peak_gib": peak,
        "first_call_s": first_s,
        "checkpointing": args.checkpointing,
        "compile": args.compile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(SHARED / "data" / "imagenet-sample"))
    parser.add_argument("--taesd", default=str(SHARED / "models/taesd/taesd_f8e4m3.safetensors"))
    parser.add_argument("--taef2", default=str(SHARED / "models/tae/taef2_encoder.pth"))
    parser.add_argument("--eps", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-photos", type=int, default=400)
    parser.add_argument("--objective", default="latent")
    parser.add_argument("--optimizer", default="pgd")
    parser.add_argument("--robust", default="")
    parser.add_argument("--jpeg", type=int, default=85)
    parser.add_argument("--eval-photos", type=int, default=48)
    parser.add_argument("--stages", default="plain,latent-small,main,finetune")
    parser.add_argument(
        "--load-main", default="", help="reuse a saved main delta (.npy), or 'bundled'"
    )
    parser.add_argument("--finetune-steps", type=int, default=50)
    parser.add_argument("--finetune-photos", type=int, default=16)
    parser.add_argument("--finetune-objective", default="latent")
    parser.add_argument(
        "--finetune-batch", type=int, default=8, help="also time fine-tuning N photos per pass"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default="/tmp/spdesk-bench")
    parser.add_argument("--cuda-speed", action="store_true")
    parser.add_argument("--cuda-repeats", type=int, default=5)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="--cuda-speed with torch.compile")
    parser.add_argument(
        "--smoke", action="store_true", help="--cuda-speed at 64 px on any device (checks code)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the CUDA figures here")
    parser.add_argument(
        "--finetune-step-times", action="store_true", help="time one fine-tuning step at 512 px"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        args.cuda_repeats, args.finetune_steps = 1, min(args.finetune_steps, 2)
        args.finetune_batch = min(args.finetune_batch, 2)
    if args.cuda_speed:
        FIGURES["torch"] = torch.__version__
        if torch.cuda.is_available():
            FIGURES["gpu"] = torch.cuda.get_device_name()
        cuda_speed(args)
        if args.json:
            args.json.write_text(json.dumps(FIGURES, indent=2))
    if args.finetune_step_times:
        finetune_step_seconds(args)
    stages = [stage for stage in args.stages.split(",") if stage and stage != "none"]
    if not stages:  # --stages none: no TAESD or photos needed (a GPU machine has neither)
        log("done")
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    taesd = load_encoder(args.taesd, device)
    common = {"photos": args.photos, "encoder": args.taesd, "eps": args.eps, "device": device}
    small = {
        "size": 128,
        "batch": 8,
        "steps": 100,
        "max_photos": 50,
        "split": 0.64,
        "val_every": 50,
    }
    if "plain" in stages:
        stage("plain", TrainConfig(**common, **small, objective="encoder"), taesd, args)
    if "latent-small" in stages:
        stage("latent-small", TrainConfig(**common, **small, objective="latent"), taesd, args)
    config = TrainConfig(
        **common,
        objective=args.objective,
        optimizer=args.optimizer,
        size=args.size,
        steps=args.steps,
        batch=args.batch,
        max_photos=args.max_photos,
        robust=tuple(r for r in args.robust.split(",") if r),
        val_every=max(1, args.steps // 5),
    )
    train_paths, val_paths = held_out_paths(config, args.eval_photos)
    delta = load_main(args.load_main) if args.load_main else None
    if "main" in stages:
        delta = stage("main", config, taesd, args)
        print(f"--- main: training photos ({len(train_paths)})")
        print(table_for(taesd, train_paths, args.size, delta, args.eps, args.jpeg))
        taef2 = load_encoder(args.taef2, device)
        print(f"--- main: transfer to TAEF2, held-out photos ({len(val_paths)})")
        print(table_for(taef2, val_paths, args.size, delta, args.eps, args.jpeg))
    if "finetune" in stages and delta is not None:
        finetune_stage(taesd, delta, val_paths[: args.finetune_photos], args)
    log("done")


if __name__ == "__main__":
    main()
