"""The generator file: safetensors with the network's weights and string metadata.

Like perturbation files (:mod:`spdesk.core.perturbation`): never pickle; a header that says what
the file is (``format`` = "spdesk-generator", ``format_version``), the budget ``eps``, the network
shape, the shaping and the training record. Loading checks the header before any tensor is read,
then that every weight the network needs is present with its shape, and finite.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from spdesk.core.errors import ConfigError, PerturbationFileError
from spdesk.core.files import atomic_write, check_save_path, shown
from spdesk.core.perturbation import FORMAT_NAME as PERTURBATION_FORMAT
from spdesk.core.perturbation import (
    GENERATOR_FORMAT,
    check_complete,
    check_eps,
    format_said,
    generator_weights_problem,
    load_perturbation,
    refuse_training_checkpoint,
    safetensors_head,
)

FORMAT_NAME = GENERATOR_FORMAT
FORMAT_VERSION = 1
MAX_HEADER = 1_000_000
MAX_BYTES = 64 << 20  # a protection generator is small; anything larger is the wrong file


@dataclass(frozen=True)
class GeneratorSpec:
    """What a generator file says about itself (everything but the weights)."""

    eps: float
    network: dict[str, int]
    shaping: dict[str, float | int]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or (self.path.stem if self.path else "generator"))


def bundled_generator_path() -> Path:
    """The generator that ships with spdesk (read through importlib.resources)."""
    ref = resources.files("spdesk.resources").joinpath("generators", "default.safetensors")
    return Path(str(ref))


def check_generator_destination(path: Path, *, force: bool = False) -> None:
    """Refuse, before training, a place a generator file cannot or must not be saved: see
    :func:`spdesk.core.files.check_save_path`. An existing file is never replaced without
    ``force``, a generator trained before neither (it was, without a word), as
    :func:`spdesk.core.perturbation.check_destination` does for a pattern."""
    check_save_path(path, "protection generator", read_spec, force=force)
    if not force and Path(path).exists():  # a generator: anything else was refused above
        raise ConfigError(
            f"{shown(path)} already holds a protection generator, so it was not replaced.",
            hint="Choose another file name, or add --force to replace it.",
        )


def _refuse_non_finite(tensors: dict[str, Any]) -> None:
    """A training that diverged (--lr 1e30) ended with NaN weights: saved, they made a file every
    command then refused as damaged ("weight net.0.bias has a wrong shape or value")."""
    import torch

    bad = [name for name, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise ConfigError(
            f"The trained network has weights that are not numbers ({bad[0]}"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the training diverged. "
            "Nothing was saved.",
            hint="Train again with a smaller --lr (the default is a safe start).",
        )


def save_generator(
    path: Path,
    state: dict[str, Any],
    *,
    eps: float,
    network: dict[str, int],
    shaping: dict[str, float | int],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write weights (a state dict of tensors) and metadata atomically."""
    from safetensors.torch import save

    check_eps(eps)
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "eps": repr(float(eps)),
        "network": json.dumps(network, sort_keys=True),
        "shaping": json.dumps(shaping, sort_keys=True),
        "metadata": json.dumps(metadata or {}, sort_keys=True, default=str),
    }
    tensors = {name: tensor.detach().float().cpu().contiguous() for name, tensor in state.items()}
    _refuse_non_finite(tensors)
    payload = save(tensors, metadata=header)
    atomic_write(path, payload)
    return path


def _header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header, read and checked before any tensor is touched."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise PerturbationFileError(f"{path.name} is too short to be a generator file.")
            (length,) = struct.unpack("<Q", head)
            if not 1 < length <= MAX_HEADER or 8 + length > size:
                raise PerturbationFileError(f"{path.name} is not a safetensors generator file.")
            raw = handle.read(length)
    except OSError as error:
        raise PerturbationFileError(f"Cannot read {path}: {error.strerror}.") from error
    if size > MAX_BYTES:
        raise PerturbationFileError(
            f"{path.name} is {size / 2**20:.0f} MiB; a protection generator is at most "
            f"{MAX_BYTES >> 20} MiB."
        )
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise PerturbationFileError(f"{path.name} has a damaged header.") from error
    if not isinstance(header, dict):
        raise PerturbationFileError(f"{path.name} has a damaged header.")
    check_complete(path, length, header)
    return header


def _metadata(path: Path) -> dict[str, str]:
    """The header's string metadata (safetensors keeps only text there: anything else is a
    damaged or hand-made file, refused before its values are trusted)."""
    meta = _header(path).get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise PerturbationFileError(
            f"{path.name} has a damaged header (its settings are not text, as spdesk writes "
            "them): the file is damaged or was not made by spdesk."
        )
    return meta


def _number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _perturbation_given(path: Path) -> PerturbationFileError:
    """The error for a universal perturbation given as a generator: recommended with
    --perturbation only where it loads as one (a damaged one would be refused there too)."""
    try:
        load_perturbation(path)
    except PerturbationFileError as error:
        return PerturbationFileError(
            f"{path.name} is a damaged universal perturbation ({error.message.rstrip('.')}), "
            "and not a protection generator.",
            hint="Give a generator made by spdesk train-generator, or leave --generator out "
            "for the bundled one.",
        )
    return PerturbationFileError(
        f"{path.name} is a universal perturbation, not a protection generator.",
        hint=f"Use it with --mode universal --perturbation {path.name}.",
    )


def saved_file_problem(path: Path, kind: str | None) -> str | None:
    """Why a file whose header says spdesk wrote it as ``kind`` (a universal perturbation's
    or a generator's format) would be refused as one, in its own option's words; None when it
    loads as one. A file is sent to --perturbation or --generator only where it is taken."""
    try:
        if kind == PERTURBATION_FORMAT:
            load_perturbation(path)
        elif kind == FORMAT_NAME:
            read_spec(path)
            return generator_weights_problem(path)
    except PerturbationFileError as error:
        return error.message.rstrip(".")
    return None


def made_by_spdesk(
    path: Path, kind: object, label: str, not_a: str
) -> tuple[str, str, bool] | None:
    """When ``kind`` (the "format" a safetensors header names) is a universal perturbation's
    or a generator's, given where something else was wanted: ``(what to say of the file,
    named ``label``, that it is, not ``not_a`` ("an encoder"), the ``spdesk protect`` option
    that takes it, whether it is damaged)``; None for any other file. A damaged one is not
    sent to its option, which would refuse it too."""
    uses = {
        PERTURBATION_FORMAT: ("universal perturbation", "--perturbation"),
        FORMAT_NAME: ("protection generator", "--generator"),
    }
    if kind not in uses:
        return None
    what, option = uses[str(kind)]
    problem = saved_file_problem(path, str(kind))
    if problem is not None:
        return f"{label} is a damaged {what} made by spdesk, not {not_a} ({problem}).", option, True
    return f"{label} is a {what} made by spdesk, not {not_a}.", option, False


def read_spec(path: Path) -> GeneratorSpec:
    """The file's description, from its header alone (cheap; no weights loaded)."""
    import hashlib

    path = Path(path)
    safetensors_head(path, "protection generator", "'spdesk train-generator'")
    meta = _metadata(path)
    if meta.get("format") == PERTURBATION_FORMAT:
        raise _perturbation_given(path)
    if meta.get("format") != FORMAT_NAME:
        refuse_training_checkpoint(path, meta, "a protection generator")
        raise PerturbationFileError(
            f"{path.name} is not an spdesk protection generator ({format_said(meta)})."
        )
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise PerturbationFileError(
            f"{path.name} uses generator format version {meta.get('format_version')!r}; this "
            f"spdesk reads version {FORMAT_VERSION}.",
            hint="Update spdesk.",
        )
    try:
        eps = float(meta["eps"])
        check_eps(eps)
        network = {str(k): int(v) for k, v in json.loads(meta["network"]).items()}
        shaping = {str(k): _number(v) for k, v in json.loads(meta["shaping"]).items()}
        metadata = json.loads(meta.get("metadata", "{}"))
        if not isinstance(metadata, dict):
            raise ValueError(f"its training record is {type(metadata).__name__}, not a mapping")
    except (KeyError, ValueError, TypeError, AttributeError, PerturbationFileError) as error:
        raise PerturbationFileError(f"{path.name} has damaged settings: {error}") from error
    _check_network(path, network)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return GeneratorSpec(eps, network, shaping, metadata, path, digest)


# The networks spdesk trains and builds (the bundled one: 48 wide, 3 blocks). A generator's
# network is built from its header before its weights are checked against it, so a forged
# header must not make spdesk allocate gigabytes or loop for minutes.
NETWORK_LIMITS = {"width": (8, 256), "blocks": (1, 16)}


def _check_network(path: Path, network: dict[str, int]) -> None:
    for key, value in network.items():
        low, high = NETWORK_LIMITS.get(key, (0, 0))
        if key not in NETWORK_LIMITS or not low <= value <= high:
            raise PerturbationFileError(
                f"{path.name} asks for a network with {key} {value}, which spdesk does not build "
                "(width 8-256, blocks 1-16): the file is damaged or was not made by spdesk."
            )


def with_ceiling(source: Path, destination: Path, ceiling: float) -> Path:
    """Copy a generator file with its shaping's ``ceiling`` set (see
    :class:`spdesk.core.shaping.Shaping`): the same weights, every pixel's budget scaled.

    Why after training: a generator trained at the full budget may trade visibility against
    strength better at a little less of it; that is measured on held-out photos, then recorded
    here (the metadata keeps the training record and says the ceiling was set afterwards).
    """
    from safetensors.torch import load_file

    from spdesk.core.shaping import Shaping

    spec = read_spec(source)
    shaping = {**spec.shaping, "ceiling": ceiling}
    try:
        Shaping.from_settings(shaping)
    except ValueError as error:
        raise PerturbationFileError(f"Cannot set the ceiling of {source.name}: {error}") from error
    metadata = {**spec.metadata, "ceiling_set_after_training": ceiling}
    return save_generator(
        destination, load_file(str(source)), eps=spec.eps, network=spec.network,
        shaping=shaping, metadata=metadata,
    )  # fmt: skip
