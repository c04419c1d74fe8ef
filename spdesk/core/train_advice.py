"""What a training run needs to be worth it, from measurements (torch-free: the app and CLI ask
before a run starts).

Measured on photos outside the repository (``../shared/data/imagenet-sample``), TAESD, ε = 8,
held-out latent distortion in multiples of random ±ε signs':

- ``--objective encoder`` (PhotoGuard, grey target; the old default), 200 steps at 128 px: 1.3x
  (issue 14's run);
- ``--objective latent`` (random start), the bundled recipe, 300 steps at 128 px: 2.14x on its
  validation photos, 1.96x on 64 unseen photos at 256 px (``resources/perturbations/RECIPE.md``);
- short runs: 0.6-0.7x after a few steps (issue 14), i.e. weaker than the noise itself.

``python benchmarks/bench_train.py --stages plain`` and ``--stages latent-small`` repeat the
first comparison at 100 steps each (encoder vs latent, the same photos, steps and budget; the
commands and the table are in ``benchmarks/README.md``). On this project's shared 2-core CPU,
held-out gain over random ±8 signs at steps 50 and 100: ``encoder`` 1.25x and 1.35x, ``latent``
1.72x and 1.84x (18 held-out photos after 100 steps, latent / round-trip SSIM drop / after
JPEG 85: ``encoder`` 1.35x / 1.30x / 1.20x, ``latent`` 1.85x / 1.96x / 1.64x).
"""

from __future__ import annotations

from spdesk.core.jobs.events import count_of

DEFAULT_OBJECTIVE = "latent"
"""The objective of ``spdesk train`` and the train dialog: it measured strongest (above)."""

MIN_USEFUL_STEPS = 100
"""Runs shorter than this are unlikely to beat random noise of the same strength."""

NOISE_GAIN = 1.0
"""A perturbation whose held-out effect is below this multiple of random noise's is no use."""


def short_run_warning(steps: int) -> str:
    """A sentence for a run of ``steps`` that is too short to beat noise ("" when it is not)."""
    if steps >= MIN_USEFUL_STEPS:
        return ""
    return (
        f"{count_of(steps, 'step')} is probably too short to beat random noise of the same "
        f"strength (runs of {MIN_USEFUL_STEPS} steps or more do, on our test photos)."
    )


ACCELERATOR_CROP_SIZE = 512
"""The crop side of training on a GPU: SD editors work at 512 px."""

CPU_CROP_SIZE = 128
"""The crop side of training on a CPU: the bundled pattern's recipe (``resources/perturbations/
RECIPE.md``). With the train dialog's other defaults then (batch 4, JPEG and resizing) on 2 CPU
cores, a step took 0.43 s at 128 px and 8.6 s at 512 px: 300 steps at 128 px trained in
2.3 minutes and reached 1.77x / 1.12x random signs' latent distortion at 256 / 512 px editors
on held-out photos, where 20 steps at 512 px (5 minutes) reached 1.25x / 0.91x and 300 would
take about 45 (``python benchmarks/bench_train_crops.py``; ``benchmarks/README.md``)."""


DEFAULT_ROBUSTNESS: tuple[str, ...] = ()
"""The edits ``spdesk train`` and the train dialog train against unless the user picks some:
none, the bundled pattern's recipe. Training against JPEG and resizing (the dialog's default
before 2026-12-02) keeps more of the effect after a JPEG re-save but makes the pattern far
easier to see and weaker at SD 1.5's own 512 px. 300 steps at 128 px crops, batch 4, on 2 CPU
cores, then 24 held-out photos through ``spdesk protect`` (SSIMULACRA2 / FLIP / latent gain
over random signs at 256 / 512 px editors / share of the 256 px gain kept after JPEG q75):

- against JPEG and resizing: 13.0 / 0.155 / 1.77x / 1.12x / 80%;
- against blur: 22.3 / 0.139 / 1.81x / 1.28x; against cropping: 41.6 / 0.101 / 1.51x / 1.33x;
- against no edits: 39.5 / 0.098 / 1.52x / 1.35x / 61% (the bundled pattern on the same
  photos: 39.0 / 0.100 / 1.55x / 1.37x / 61%).

(``python benchmarks/bench_train_crops.py --sizes 128 --steps 300 --robust jpeg,resize
--attacks jpeg75 --bundled --measure 24``, then ``--robust ""``, ``--robust blur`` and
``--robust crop`` without ``--attacks``; ``benchmarks/README.md``.)"""


def default_crop_size(device_kind: str | None) -> int:
    """The crop side a run on ``device_kind`` ("cuda", "mps", "cpu"; None while unknown) gets
    unless the user picks one: a CPU trains at 128 px, where a run takes minutes, not hours."""
    return CPU_CROP_SIZE if device_kind == "cpu" else ACCELERATOR_CROP_SIZE
