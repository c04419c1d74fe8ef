"""Benchmark: the default protection on camera-sized photos, at each large-photo exponent.

Not a test. ``../shared`` has no photo over 1600 px, so camera-sized stand-ins are made from
held-out photos of ``../shared/data/imagenet-sample`` (the same held-out places as
``bench_protection.py``, after its averaging attack's 100): each is enlarged with Lanczos so its
short side is ``--short-side`` (4000 px: a 24 MP photo at 3:2) and given a mild sensor grain
(σ ``--grain`` 8-bit steps, grey). At the editor's view a stand-in is its ImageNet photo; at
100% it is smoother than a camera's photo, which has fine detail to hide a change in, so the
100% figures are a worst case.

Photo mode writes its change at the editor's 512 px view and scales it up onto the photo; it
gives it a share of the budget (``geometry.large_photo_factor``). For each share asked for
(``--factors``) this prints what a user sees and what an editor sees:

- visibility, protected vs original (SSIMULACRA2, FLIP): at 100% zoom, in the photo's centre
  and in its flattest ``--crop`` px square (where a change shows most), and the whole photo
  fitted to a 1920x1080 screen (Lanczos, as a viewer shrinks it);
- strength: TAESD latent distortion of the editor's view (short side 256 and 512, Lanczos, centre
  square) and its ratio to the same protection of the photo at the view's own size (``of a 512
  photo``: the share of a small photo's protection that a camera photo keeps) and to random ±8
  signs laid at the view (as spdesk lays its change) and at full size (which downsizing averages
  away);
- the same for an editor that works on a square of the photo (``--crop-editors``, its side at
  100%) shrunk to 512 px: inpainting only a face or a detail, as editors' "only masked" modes
  do, take the masked region with some margin, so the square is 512 px or larger;
- with ``--attacks``: the same whole-photo editor after each attack on the full-size photo
  (JPEG, 0.5x and back, blur, as ``bench_protection.py`` names them), as a multiple of
  full-size signs after the same attack, and the share of the advantage kept;
- with ``--average N``: the averaging attack (``bench_protection.py``'s, as someone with spdesk's
  source would run it) fitted on N other held-out photos made camera-sized and protected alike,
  on the product and on full-size signs;
- with ``--mid-layers``: candidates spdesk does not make (yet), the view's change plus the
  generator's change written at a larger view (``SIDE:VIEW_SHARE:MID_SHARE``).

    python benchmarks/bench_large_photos.py --photos 6 --factors product,E=0.5,E=0 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from bench_protection import SHARED, held_out
from PIL import Image

from spdesk.core import geometry, photo_protect
from spdesk.core.assessment import (
    Protect,
    averaging_attack,
    editor_latent,
    mode_protect,
    relative_change,
    sign_noise,
    view_sign_noise,
)
from spdesk.core.attacks import StrongestAveraging, simple_attack, working_view
from spdesk.core.encoders import Encoder, load_encoder
from spdesk.core.generator_file import bundled_generator_path
from spdesk.core.photo_protect import GeneratorProtector
from spdesk.core.visibility import flip, ssimulacra2

SCREEN = (1920, 1080)
CROP_EDITOR = 512  # an editor that works on a square of the photo at full resolution


def crop_key(side: int) -> str:
    """The figure's name for a crop editor of ``side`` px (512: the name earlier runs used)."""
    return "latent crop" if side == CROP_EDITOR else f"latent crop{side}"


def centre(photo: np.ndarray, side: int) -> np.ndarray:
    top, left = (photo.shape[0] - side) // 2, (photo.shape[1] - side) // 2
    return photo[top : top + side, left : left + side]


def stand_in(path: Path, short_side: int, grain: float, seed: int) -> np.ndarray:
    """A camera-sized photo made from ``path``: enlarged (Lanczos) plus grey grain."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = short_side / min(rgb.size)
    big = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.LANCZOS)
    noise = np.random.default_rng(seed).normal(0, grain, (big.height, big.width, 1))
    out: np.ndarray = np.clip(np.rint(np.asarray(big, np.float32) + noise), 0, 255)
    return out.astype(np.uint8)


def flattest_crop(photo: np.ndarray, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side`` px square (on a grid of half steps) whose luminance
    varies least: a sky or a wall, where a change shows most."""
    grey = photo.astype(np.float32).mean(axis=2)
    best, corner = np.inf, (0, 0)
    for top in range(0, photo.shape[0] - side + 1, side // 2):
        for left in range(0, photo.shape[1] - side + 1, side // 2):
            spread = float(grey[top : top + side, left : left + side].std())
            if spread < best:
                best, corner = spread, (top, left)
    return corner


product_factor = photo_protect.large_photo_factor


def factor_function(spec: str) -> Callable[[int, int], float]:
    """The share of the budget a candidate gives a photo of height h over a view of height v."""
    if spec == "product":
        return product_factor
    if spec.startswith("E="):
        exponent = float(spec[2:])
        return lambda h, v: min(1.0, (h / v) ** -exponent)
    share = float(spec)
    return lambda h, v: 1.0 if h <= v else share


def fit_screen(photo: np.ndarray) -> np.ndarray:
    height, width = photo.shape[:2]
    scale = min(SCREEN[0] / width, SCREEN[1] / height, 1.0)
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))


def visibility(original: np.ndarray, changed: np.ndarray, side: int) -> dict[str, float]:
    """SSIMULACRA2 and FLIP at 100% (centre and flattest crop) and fitted to the screen."""
    height, width = original.shape[:2]
    views = {
        "centre": ((height - side) // 2, (width - side) // 2),
        "flat": flattest_crop(original, side),
    }
    out = {}
    for name, (top, left) in views.items():
        a = original[top : top + side, left : left + side]
        b = changed[top : top + side, left : left + side]
        out[f"ssim2 {name}"], out[f"flip {name}"] = ssimulacra2(a, b), flip(a, b)
    a, b = fit_screen(original), fit_screen(changed)
    out["ssim2 screen"], out["flip screen"] = ssimulacra2(a, b), flip(a, b)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared assets (../shared)")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--skip", type=int, default=100, help="held-out photos to pass over")
    parser.add_argument("--short-side", type=int, default=4000)
    parser.add_argument("--grain", type=float, default=3.0)
    parser.add_argument("--crop", type=int, default=1024)
    parser.add_argument(
        "--factors",
        default="product,E=0.5,E=0",
        help="photo mode's share of the budget on these photos, each a candidate: 'product' "
        "(spdesk's large_photo_factor), E=X ((photo / view) ** -X) or a fixed share, e.g. 0.36",
    )
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--full-res-layer",
        default="",
        metavar="SHARES",
        help="also measure a layer spdesk does not add (yet): the generator run at 100%% on the "
        "centre --crop square, added at these shares of the budget (e.g. 0.5,1) to the "
        "product's change there, and alone; figures of that square and the crop editor",
    )
    parser.add_argument(
        "--crop-editors",
        default="512",
        help="sides at 100%% of the squares a crop editor takes (then shrinks to 512 px)",
    )
    parser.add_argument(
        "--attacks", default="", help="attacks on the full-size photo, e.g. jpeg75,down0.5,blur1"
    )
    parser.add_argument(
        "--average",
        type=int,
        default=0,
        metavar="N",
        help="also the averaging attack, fitted on N other stand-ins (the issue's 100)",
    )
    parser.add_argument(
        "--mid-layers",
        default="",
        metavar="SIDE:A:B,...",
        help="also measure the view's change at share A plus the generator's change written at "
        "a view of short side SIDE (scaled up to the photo) at share B (A + B <= 1)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.full_res_layer and "product" not in args.factors.split(","):
        parser.error("--full-res-layer adds to the product's change: keep 'product' in --factors")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    paths = held_out(args.shared / "data" / "imagenet-sample")[args.skip : args.skip + args.photos]
    encoder = load_encoder(str(args.shared / "models/taesd/taesd_f8e4m3.safetensors"), "cpu")
    sizes = [int(s) for s in args.sizes.split(",")]
    protect, _, _ = mode_protect("photo")
    candidates = {f"photo, {spec}": factor_function(spec) for spec in args.factors.split(",")}
    references = {
        "signs ±8 at the view": view_sign_noise(8.0),
        "signs ±8 full size": sign_noise(8.0),
    }
    rows: dict[str, list[dict[str, float]]] = {}
    layers: dict[str, list[dict[str, float]]] = {}
    shares = [float(share) for share in args.full_res_layer.split(",") if share]
    crop_sides = [int(side) for side in args.crop_editors.split(",")]
    attacks = {name: simple_attack(name) for name in args.attacks.split(",") if name}
    mids = [parse_mid_layer(spec) for spec in args.mid_layers.split(",") if spec]
    mid_generators = {
        side: GeneratorProtector(bundled_generator_path(), working_side=side)
        for side in {side for side, _, _ in mids}
        | ({photo_protect.WORKING_SIDE} if mids else set())
    }
    averaging = fit_averaging(args, protect, references["signs ±8 full size"])
    for index, path in enumerate(paths):
        photo = stand_in(path, args.short_side, args.grain, index)
        view_h, view_w = geometry.working_size(*photo.shape[:2])
        small = np.asarray(Image.fromarray(photo).resize((view_w, view_h), Image.LANCZOS))
        clean = {s: editor_latent(encoder, photo, s) for s in sizes}
        small_clean = {s: editor_latent(encoder, small, s) for s in sizes}
        crop_clean = {c: editor_latent(encoder, centre(photo, c), CROP_EDITOR) for c in crop_sides}
        attacked_clean = {
            (name, s): editor_latent(encoder, attack(photo), s)
            for name, attack in attacks.items()
            for s in sizes
        }
        small_gain = {
            s: relative_change(editor_latent(encoder, protect(small, index), s), small_clean[s])
            for s in sizes
        }
        outputs = {}
        for label, factor in candidates.items():
            photo_protect.large_photo_factor = factor  # looked up at each call
            outputs[label] = protect(photo, index)
        photo_protect.large_photo_factor = product_factor
        outputs.update(mid_layer_candidates(photo, mids, mid_generators))
        for label, noise in references.items():
            outputs[label] = noise(photo, index)
        for label, changed in outputs.items():
            figures = visibility(photo, changed, args.crop)
            figures["max |change|"] = float(np.abs(changed.astype(int) - photo.astype(int)).max())
            for s in sizes:
                latent = relative_change(editor_latent(encoder, changed, s), clean[s])
                figures[f"latent {s}"] = latent
                figures[f"share {s}"] = latent / small_gain[s]
            for c in crop_sides:
                crop = editor_latent(encoder, centre(changed, c), CROP_EDITOR)
                figures[crop_key(c)] = relative_change(crop, crop_clean[c])
            for name, attack in attacks.items():
                attacked = attack(changed)
                for s in sizes:
                    latent = editor_latent(encoder, attacked, s)
                    figures[f"latent {s} {name}"] = relative_change(
                        latent, attacked_clean[(name, s)]
                    )
            if label in averaging:
                attacked = averaging[label](changed)
                for s in sizes:
                    latent = editor_latent(encoder, attacked, s)
                    figures[f"latent {s} average"] = relative_change(latent, clean[s])
            rows.setdefault(label, []).append(figures)
        for label, figures in full_res_layers(encoder, photo, outputs, shares, args.crop, index):
            layers.setdefault(label, []).append(figures)
        print(
            f"  {index + 1}/{len(paths)} {path.name} {photo.shape[1]}x{photo.shape[0]}", flush=True
        )
    report(rows, sizes)
    if layers:
        report_layers(layers)
    print(
        f"measured in {time.monotonic() - started:.0f} s, torch threads {torch.get_num_threads()}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": _settings(args), "rows": rows, "layers": layers}, indent=1)
        )


def fit_averaging(
    args: argparse.Namespace, protect: Callable[[np.ndarray, int], np.ndarray], signs: Protect
) -> dict[str, StrongestAveraging]:
    """The averaging attack on the product and on full-size signs, each fitted on ``--average``
    held-out photos before those measured (``bench_protection.py``'s attack photos), made
    camera-sized as they are and protected alike; the fit keeps only their views."""
    if not args.average:
        return {}
    attacks = {
        "photo, product": averaging_attack(protect),
        "signs ±8 full size": averaging_attack(signs),
    }
    paths = held_out(args.shared / "data" / "imagenet-sample")[: args.average]
    views: dict[str, list[np.ndarray]] = {label: [] for label in attacks}
    for index, path in enumerate(paths):
        photo = stand_in(path, args.short_side, args.grain, 50_000 + index)
        for label, fn in (("photo, product", protect), ("signs ±8 full size", signs)):
            views[label].append(working_view(fn(photo, 100_000 + index)))
        if (index + 1) % 10 == 0:
            print(f"  averaging attack: {index + 1}/{len(paths)} photos protected", flush=True)
    for label, attack in attacks.items():
        attack.fit(views[label])
    return dict(attacks)


def parse_mid_layer(spec: str) -> tuple[int, float, float]:
    """``SIDE:A:B`` of ``--mid-layers``, checked."""
    side, view_share, mid_share = spec.split(":")
    out = int(side), float(view_share), float(mid_share)
    if out[1] + out[2] > 1 + 1e-9:
        raise SystemExit(f"--mid-layers {spec}: the shares add up to more than the budget")
    return out


def mid_layer_candidates(
    photo: np.ndarray,
    mids: list[tuple[int, float, float]],
    generators: dict[int, GeneratorProtector],
) -> dict[str, np.ndarray]:
    """Each ``--mid-layers`` candidate: the view's change and one written at a larger view,
    each at the full budget (scaled up to the photo as photo mode does), added at their shares."""
    if not mids:
        return {}
    base = photo.astype(np.float32)
    photo_protect.large_photo_factor = lambda h, v: 1.0
    try:
        changes = {
            side: np.asarray(g.apply(Image.fromarray(photo))[0], np.float32) - base
            for side, g in generators.items()
        }
    finally:
        photo_protect.large_photo_factor = product_factor
    view = changes[photo_protect.WORKING_SIDE]
    return {
        f"view {a:g} + {side} px {b:g}": np.clip(
            np.rint(base + a * view + b * changes[side]), 0, 255
        ).astype(np.uint8)
        for side, a, b in mids
    }


def full_res_layers(
    encoder: Encoder,
    photo: np.ndarray,
    outputs: dict[str, np.ndarray],
    shares: list[float],
    side: int,
    index: int,
) -> Iterator[tuple[str, dict[str, float]]]:
    """The centre ``side`` px square with the generator's change written at 100% (the square
    as its own view) added at each share, to the product's change there and alone: its
    SSIMULACRA2 and FLIP, and what the crop editor (its centre) sees."""
    if not shares:
        return
    square = centre(photo, side)
    generator = GeneratorProtector(bundled_generator_path(), working_side=side)
    layer = np.asarray(generator.apply(Image.fromarray(square), f"photo-{index}")[0])
    change = layer.astype(np.float32) - square
    clean = editor_latent(encoder, centre(square, CROP_EDITOR), CROP_EDITOR)
    bases = {"product +": centre(outputs["photo, product"], side), "alone:": square}
    references = {"signs ±8 full size": centre(outputs["signs ±8 full size"], side)}
    candidates = {
        f"{name} layer x{share:g}": np.clip(np.rint(base + share * change), 0, 255).astype(np.uint8)
        for share in shares
        for name, base in bases.items()
    }
    for label, changed in {**references, "product": bases["product +"], **candidates}.items():
        crop = editor_latent(encoder, centre(changed, CROP_EDITOR), CROP_EDITOR)
        yield (
            label,
            {
                "ssim2": ssimulacra2(square, changed),
                "flip": flip(square, changed),
                "latent crop": relative_change(crop, clean),
            },
        )


def report_layers(layers: dict[str, list[dict[str, float]]]) -> None:
    print(
        "a change written at 100% too (not in spdesk): the centre square at 100% "
        "(SSIMULACRA2 mean (worst) / FLIP) and the crop editor (x full-size signs)"
    )
    signs = float(np.mean([r["latent crop"] for r in layers["signs ±8 full size"]]))
    for label, rs in layers.items():
        ssim2 = [r["ssim2"] for r in rs]
        latent = float(np.mean([r["latent crop"] for r in rs]))
        print(
            f"  {label:<24} {np.mean(ssim2):5.1f} ({min(ssim2):5.1f}) / "
            f"{np.mean([r['flip'] for r in rs]):.3f} | {latent:.4f} = {latent / signs:.2f}x"
        )


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """The run's settings, without this machine's paths."""
    return {k: v for k, v in vars(args).items() if k not in ("shared", "json")}


def report(rows: dict[str, list[dict[str, float]]], sizes: list[int]) -> None:
    mean = {
        label: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for label, rs in rows.items()
    }
    worst = {
        label: {k: float(np.min([r[k] for r in rs])) for k in rs[0]} for label, rs in rows.items()
    }
    view_signs = mean["signs ±8 at the view"]
    full_signs = mean["signs ±8 full size"]
    print(
        "visibility (SSIMULACRA2 mean (worst) / FLIP): "
        "100% centre | 100% flattest | fitted to 1920x1080"
    )
    for label, m in mean.items():
        cells = [
            f"{m[f'ssim2 {v}']:5.1f} ({worst[label][f'ssim2 {v}']:5.1f}) / {m[f'flip {v}']:.3f}"
            for v in ("centre", "flat", "screen")
        ]
        print(f"  {label:<22} " + " | ".join(cells) + f"   max |change| {m['max |change|']:.1f}")
    print(
        "strength (TAESD latent distortion = x signs ±8 at the view / x full-size signs / "
        "share of the same protection on the photo at the view's size)"
    )
    for label, m in mean.items():
        cells = [
            f"{s}: {m[f'latent {s}']:.4f} = {m[f'latent {s}'] / view_signs[f'latent {s}']:.2f}x / "
            f"{m[f'latent {s}'] / full_signs[f'latent {s}']:.2f}x / {m[f'share {s}']:.0%}"
            for s in sizes
        ]
        print(f"  {label:<22} " + " | ".join(cells))
    crops = [k for k in full_signs if k.startswith("latent crop")]
    print(
        f"an editor of a square of the photo shrunk to {CROP_EDITOR} px (inpainting a face or a "
        "detail): TAESD latent distortion = x full-size signs, per side of the square at 100%"
    )
    for label, m in mean.items():
        cells = [
            f"{k.removeprefix('latent crop') or CROP_EDITOR}: {m[k]:.4f} = "
            f"{m[k] / full_signs[k]:.2f}x"
            for k in crops
        ]
        print(f"  {label:<22} " + " | ".join(cells))
    report_attacks(mean, full_signs, sizes)


def report_attacks(
    mean: dict[str, dict[str, float]], full_signs: dict[str, float], sizes: list[int]
) -> None:
    """Each attack's figures: x full-size signs after the same attack, and the share of the
    advantage over them kept ((gain after - 1) / (gain before - 1), as bench_protection)."""
    attacks = sorted({k.split(" ", 2)[2] for k in full_signs if k.count(" ") == 2})
    if not attacks:
        return
    print("after an attack on the full-size photo: x full-size signs after it / share kept")
    for label, m in mean.items():
        cells = []
        for name in attacks:
            for s in sizes:
                if f"latent {s} {name}" not in m:  # the averaging attack: product and signs only
                    continue
                before = m[f"latent {s}"] / full_signs[f"latent {s}"]
                after = m[f"latent {s} {name}"] / full_signs[f"latent {s} {name}"]
                kept = f"{(after - 1) / (before - 1):.0%}" if before > 1.02 else "n/a"
                cells.append(f"{name} @{s}: {after:.2f}x / {kept}")
        if cells:
            print(f"  {label:<22} " + " | ".join(cells))


if __name__ == "__main__":
    main()
