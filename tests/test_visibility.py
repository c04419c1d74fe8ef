"""The visibility wrappers agree with the packages they wrap and order noise sensibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spdesk.core.visibility import flip, ssimulacra2

pytest.importorskip("ssimulacra2", reason="visibility figures need the 'eval' extra")
pytest.importorskip("flip_evaluator", reason="visibility figures need the 'eval' extra")


def _photo() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    base = 120 + 50 * np.sin(x / 9) * np.cos(y / 7)
    return np.clip(np.stack([base, base * 0.8, base * 1.1], -1), 0, 255).astype(np.uint8)


def _noisy(photo: np.ndarray, amplitude: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).choice([-amplitude, amplitude], photo.shape)
    return np.clip(photo.astype(int) + noise, 0, 255).astype(np.uint8)


def test_identical_images_score_perfectly() -> None:
    photo = _photo()
    assert ssimulacra2(photo, photo) == 100.0 and flip(photo, photo) == 0.0


def test_matches_the_package_on_files(tmp_path: Path) -> None:
    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2

    photo, noisy = _photo(), _noisy(_photo(), 6)
    Image.fromarray(photo).save(tmp_path / "a.png")
    Image.fromarray(noisy).save(tmp_path / "b.png")
    assert ssimulacra2(photo, noisy) == pytest.approx(
        compute_ssimulacra2(str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    )


def test_stronger_noise_is_more_visible() -> None:
    photo = _photo()
    weak, strong = _noisy(photo, 2), _noisy(photo, 12)
    assert 100 > ssimulacra2(photo, weak) > ssimulacra2(photo, strong)
    assert 0 < flip(photo, weak) < flip(photo, strong) < 1


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        ssimulacra2(_photo(), _photo()[:32])
    with pytest.raises(ValueError, match="uint8"):
        flip(_photo().astype(np.float32), _photo())


def test_a_missing_package_is_a_plain_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from spdesk.core.errors import ConfigError

    monkeypatch.setitem(sys.modules, "ssimulacra2", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match="need the ssimulacra2 package") as info:
        ssimulacra2(_photo(), _noisy(_photo(), 4))
    assert 'pip install "ssimulacra2>=0.3" "flip-evaluator>=1.6"' in str(info.value.hint)


def test_the_install_hint_names_what_the_eval_extra_installs() -> None:
    """Named package by package: "spdesk[eval]" would be looked up on PyPI, not where this
    spdesk came from (a checkout, a wheel)."""
    import tomllib

    from spdesk.core.visibility import EVAL_REQUIREMENTS, INSTALL_EVAL

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert list(EVAL_REQUIREMENTS) == extras["eval"]
    assert INSTALL_EVAL == 'pip install "ssimulacra2>=0.3" "flip-evaluator>=1.6"'
