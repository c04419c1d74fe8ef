"""Benchmark: preview edits and semantic fine-tuning with SD 1.5's real architecture.

Not a test. Speed does not depend on the weights, so the model is SD 1.5's architecture
(UNet2DConditionModel, AutoencoderKL, CLIP ViT-L/14 text encoder) with random weights, saved once
into a diffusers folder (or pass --model-dir for real weights). Prints:

1. seconds per preview (original, protected and noise baseline edited in one batch) and peak
   memory, img2img at --size with --steps denoising steps, --strength-edit and guidance;
2. seconds per fine-tuning step and peak memory for the encoder-only objectives (encoder, latent)
   against the semantic ones (sds+, advdm) on the same photo, each in a fresh process so that the
   peak is its own.

    nice python benchmarks/bench_preview.py                 # CPU: 256 px, 10 steps
    python benchmarks/bench_preview.py --size 512 --steps 25  # CUDA
    python benchmarks/bench_preview.py --smoke                # tiny SD, 64 px: checks the code
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


def build_sd15_architecture(folder: Path) -> Path:
    """Random-weight SD 1.5 in diffusers layout (tokenizer: the tests' small byte-level one)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tiny_sd import save_tiny_sd
    from transformers import CLIPTextConfig, CLIPTextModel

    if (folder / "model_index.json").is_file():
        return folder
    save_tiny_sd(folder)  # layout, tokenizer, scheduler; the models are replaced below
    torch.manual_seed(0)
    UNet2DConditionModel(**SD15_UNET).save_pretrained(folder / "unet", safe_serialization=True)
    AutoencoderKL(**SD15_VAE).save_pretrained(folder / "vae", safe_serialization=True)
    text = CLIPTextConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_attention_heads=12,
        num_hidden_layers=12,
        max_position_embeddings=77,
        vocab_size=49408,
        projection_dim=768,
    )
    CLIPTextModel(text).save_pretrained(folder / "text_encoder", safe_serialization=True)
    return folder


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # VmHWM restarts at exec; ru_maxrss would carry the forking parent's peak into the child.
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def photo(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(30, 220, (size // 16, size // 16, 3), dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC))


def perturbation(size: int):  # type: ignore[no-untyped-def]
    from spdesk.core.perturbation import Perturbation

    rng = np.random.default_rng(1)
    delta = rng.choice([-8 / 255, 8 / 255], (3, size, size)).astype(np.float32)
    return Perturbation(delta=delta, eps=8.0)


def bench_preview(args: argparse.Namespace, model_dir: Path) -> dict[str, float]:
    """Previews through :func:`spdesk.core.usecases.preview_photo`, the call behind
    ``spdesk preview`` and the app's preview (the photo and pattern from files, as there)."""
    from PIL import Image

    from spdesk.core.apply import ApplyOptions
    from spdesk.core.perturbation import save_perturbation
    from spdesk.core.preview import PreviewEngine, PreviewRequest
    from spdesk.core.usecases import preview_photo

    request = PreviewRequest(
        prompt="make it like a watercolor painting",
        strength=args.strength_edit,
        steps=args.steps,
        seed=0,
        working_size=args.size,
    )
    options = ApplyOptions(working_size=args.size)
    timings = []
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp:
        photo_path = Path(tmp) / "photo.png"
        Image.fromarray(photo(args.size)).save(photo_path)
        delta = perturbation(args.size)
        pattern = save_perturbation(Path(tmp) / "p.safetensors", delta.delta, eps=delta.eps)

        def edit() -> Any:
            return preview_photo(photo_path, pattern, request, options, engine)

        with PreviewEngine(model_dir, device=args.device) as engine:
            started = time.perf_counter()
            engine.pipeline("img2img")
            load_s = time.perf_counter() - started
            cuda = engine.device.type == "cuda"
            if cuda:  # a first edit picks cuDNN's kernels; the peak is that of the timed edits
                edit()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            for _ in range(args.repeats):
                started = time.perf_counter()
                outcome = edit()
                if cuda:
                    torch.cuda.synchronize()
                timings.append(time.perf_counter() - started)
            peak = peak_memory_mib(engine.device)
    return {
        "load_s": load_s,
        "preview_s": float(np.median(timings)),
        "unet_calls": 2 * max(1, int(args.steps * args.strength_edit)),
        "images_per_call": 3,
        "peak_mib": peak,
        "edit_ssim": float(outcome.result.figures["protected_edit"]["ssim"] or 0.0),
    }


def bench_objective(args: argparse.Namespace, model_dir: Path) -> dict[str, float]:
    """One fine-tuning step of an objective, on the optimiser itself: no command fine-tunes
    with the semantic objectives yet (they need the UNet's folder and a prompt), so there is
    no use case to call; a job would add reading and writing files to what is measured."""
    from spdesk.core.apply import ApplyOptions
    from spdesk.core.device import resolve_device
    from spdesk.core.encoders import load_encoder
    from spdesk.core.finetune import FineTuner

    device = resolve_device(args.device)
    encoder = load_encoder(str(model_dir), str(device))
    tuner = FineTuner(
        perturbation(args.size),
        encoder,
        steps=args.finetune_steps,
        objective=args.child,
        options=ApplyOptions(working_size=args.size),
        objective_options={"model_dir": str(model_dir), "prompt": "add some snow"},
    )
    image = photo(args.size)
    tuner.steps = 1  # warm-up: loads the UNet for the semantic objectives
    tuner.protect(image)
    tuner.steps = args.finetune_steps
    started = time.perf_counter()
    tuner.protect(image)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.finetune_steps
    return {"step_s": seconds, "peak_mib": peak_memory_mib(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="working size (CPU 256, GPU 512)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (CPU 10, GPU 25)")
    parser.add_argument("--strength-edit", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--finetune-steps", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--objectives", default="encoder,latent,sds+,advdm")
    parser.add_argument("--skip-preview", action="store_true", help="only the fine-tuning steps")
    parser.add_argument("--smoke", action="store_true", help="tiny SD at 64 px: checks the code")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available() and args.device in ("auto", "cuda")
    if args.smoke:
        args.size, args.steps, args.repeats, args.finetune_steps = 64, 2, 1, 1
    args.size = args.size or (512 if gpu else 256)
    args.steps = args.steps or (25 if gpu else 10)
    model_dir = args.model_dir or model_folder(args.smoke)
    if args.child:
        print(json.dumps(bench_objective(args, model_dir)))
        return
    gpu_name = torch.cuda.get_device_name() if gpu else "none"
    print(f"torch {torch.__version__}, GPU {gpu_name}, threads {torch.get_num_threads()}")
    print(f"model {model_dir}")
    figures: dict[str, object] = {"torch": torch.__version__, "gpu": gpu_name, "size": args.size}
    if not args.skip_preview:
        figures["preview"] = report_preview(args, model_dir)
        if args.json:  # written now too: a time limit may stop the fine-tuning part
            args.json.write_text(json.dumps(figures, indent=2))
    figures["finetune_steps"] = report_objectives(args, model_dir)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def model_folder(smoke: bool) -> Path:
    """The random-weight SD 1.5 architecture (or, for --smoke, the tests' tiny SD), built once."""
    if smoke:
        from tiny_sd import save_tiny_sd

        folder = Path(tempfile.gettempdir()) / "spdesk-bench-sd-tiny"
        return folder if (folder / "model_index.json").is_file() else save_tiny_sd(folder)
    return build_sd15_architecture(Path(tempfile.gettempdir()) / "spdesk-bench-sd15-random")


def report_preview(args: argparse.Namespace, model_dir: Path) -> dict[str, float]:
    figures = bench_preview(args, model_dir)
    print(
        f"preview img2img {args.size}x{args.size}, {args.steps} steps x strength "
        f"{args.strength_edit}, guidance 7.5, 3 images batched (original, protected, noise): "
        f"{figures['preview_s']:.2f} s per preview ({figures['unet_calls']} UNet passes), "
        f"pipeline load {figures['load_s']:.1f} s, peak {figures['peak_mib']:.0f} MiB"
    )
    return figures


def report_objectives(args: argparse.Namespace, model_dir: Path) -> dict[str, dict[str, float]]:
    results = {}
    for name in args.objectives.split(","):
        command = [sys.executable, __file__, "--child", name, "--model-dir", str(model_dir)]
        command += ["--size", str(args.size), "--finetune-steps", str(args.finetune_steps)]
        command += ["--device", args.device]
        if args.threads:
            command += ["--threads", str(args.threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    base = results.get("advdm")
    print(f"fine-tuning at {args.size}x{args.size}, batch 1 (mean of {args.finetune_steps} steps):")
    for name, figures in results.items():
        ratio = f", {figures['step_s'] / base['step_s']:.2f}x advdm time" if base else ""
        memory = f", {figures['peak_mib'] / base['peak_mib']:.2f}x memory" if base else ""
        print(
            f"  {name:8s} {figures['step_s']:.2f} s/step, peak {figures['peak_mib']:.0f} MiB"
            f"{ratio}{memory}"
        )
    return results


if __name__ == "__main__":
    main()
