"""How visible each mode is at each strength preset, measured: the words under the app's
strength buttons.

Torch-free (the app shows them before anything heavy loads). SSIMULACRA2 of protected vs
original, mean over 24 held-out photos of the ImageNet research sample that neither bundled file
was trained on (higher is less visible; 100 = identical), every photo through ``spdesk
protect``'s own code. The universal figures from ``python benchmarks/bench_protection.py --modes
universal,photo --strengths 4,16 --universal-strengths 4,16 --attacks "" --transfer "" --measure
24 --threads 2 --speed-photos 0 --attack-photos 0`` (2026-12-02, 23 minutes on 2 CPU cores;
``benchmarks/results/cpu-2026-12-02/strength_presets.json``); the photo figures from the same
command with ``--modes photo --strengths 4,16`` and the generator bundled since 2026-12-04
(2026-12-04, 11 minutes; ``benchmarks/results/cpu-2026-12-04/presets_ceiling15_16.json``). With
no attack photos these are the first 24 held-out photos; the README's table measures the 24 after
the 100 its averaging attack uses, where strength 8 scored 71.4 (photo) and 32.6 (universal).
For scale, these photos re-saved as JPEG: quality 75 scores 74.2 and quality 50 61.7; random ±8
signs 56.1.
"""

from __future__ import annotations

from itertools import pairwise

SSIMULACRA2: dict[str, dict[float, float]] = {
    "photo": {4.0: 86.8, 8.0: 73.1, 16.0: 47.4},
    "universal": {4.0: 69.0, 8.0: 39.0, 16.0: -7.2},
}
"""Mean SSIMULACRA2 by mode family ("photo": each photo's own pattern, fine-tuned or not;
"universal": the bundled universal pattern) and strength."""

BUNDLED_UNIVERSAL_GAIN: dict[int, float] = {256: 1.55, 512: 1.37}
"""The bundled universal pattern's latent distortion in multiples of random ±8 signs', at
editors of 256 and 512 px (TAESD), from the same run. Its file's own "gain_over_sign" (2.1) is
the training's check on 128 px crops, not the product's path."""

JPEG_Q75 = 74.2
JPEG_Q50 = 61.7
PLAIN = 40.0  # below this the change is plain to see (random ±8 signs: 56.1, worst photo 28.1)


def estimated_ssimulacra2(family: str, eps: float) -> float:
    """The measured figure at a preset; between presets, interpolated (outside them, the
    nearest preset's: more strength is never less visible)."""
    if eps in SSIMULACRA2[family]:
        return SSIMULACRA2[family][eps]
    figures = sorted(SSIMULACRA2[family].items())
    if eps <= figures[0][0]:
        return figures[0][1]
    for (low, at_low), (high, at_high) in pairwise(figures):
        if eps <= high:
            return at_low + (at_high - at_low) * (eps - low) / (high - low)
    return figures[-1][1]


def visibility_words(family: str, eps: float) -> str:
    """How visible ``family`` is at strength ``eps``, against JPEG re-saves of the same photos."""
    score = estimated_ssimulacra2(family, eps)
    if score >= JPEG_Q75:
        return "Hard to see: less visible than a JPEG re-save at quality 75."
    if score >= JPEG_Q50:
        return "A faint grain at 100% zoom, like a JPEG re-save at quality 50-75."
    if score >= PLAIN:
        return "Visible at 100% zoom on smooth areas, more than a JPEG re-save at quality 50."
    return "Plainly visible on smooth areas at 100% zoom."


def visibility_tip(family: str, eps: float) -> str:
    """The figure behind :func:`visibility_words`, for a tooltip."""
    measured = eps in SSIMULACRA2[family]
    how = "measured" if measured else "estimated from the presets"
    return (
        f"SSIMULACRA2 {estimated_ssimulacra2(family, eps):.0f} ({how} on 24 test photos; "
        f"100 = identical, JPEG quality 75 scores {JPEG_Q75:.0f}, quality 50 {JPEG_Q50:.0f})"
    )
