"""The perturbation file: safetensors with one tensor ``delta`` and string metadata.

``delta`` is float, shape (3, H, W), in pixel units of a [0, 1] image, and |delta| <= eps/255 where
``eps`` is the budget in 8-bit steps. Metadata travels as safetensors string metadata; values that
are not strings are JSON-encoded and listed under ``json_keys`` so they load back with their type.
Nothing here unpickles: a file that is not safetensors is refused with a precise message.

Loading reads the safetensors header first and refuses a ``delta`` of the wrong shape, size or
type before any tensor is loaded (a forged 3x12000x12000 file costs a few bytes, not gigabytes).
``delta`` must be stored as float32 or float16 (what numpy reads); float64 files are refused
(spdesk writes float32, and doubles would only double the memory for no visible difference), as
are bfloat16, 8-bit floats and integers.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from spdesk.core.errors import ConfigError, PerturbationFileError
from spdesk.core.files import atomic_write, check_save_path, shown
from spdesk.core.paths import library_dir

FORMAT_NAME = "spdesk-perturbation"
GENERATOR_FORMAT = "spdesk-generator"  # photo mode's network (spdesk.core.generator_file)
FORMAT_VERSION = 1
MAX_EPS = 64.0  # 8-bit steps; beyond this a "perturbation" is a visible overlay
MAX_SIDE = 4096
BOUND_TOLERANCE = 1e-5  # float rounding when a bound-respecting delta is stored


@dataclass(frozen=True)
class Perturbation:
    """A loaded, validated perturbation."""

    delta: np.ndarray  # float32 (3, H, W), pixel units, |delta| <= eps / 255
    eps: float  # budget in 8-bit steps
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the pattern, usually 512x512."""
        return int(self.delta.shape[1]), int(self.delta.shape[2])

    @property
    def name(self) -> str:
        fallback = self.path.stem if self.path else "perturbation"
        return str(self.metadata.get("name") or fallback)

    @property
    def description(self) -> str:
        return str(self.metadata.get("description", ""))

    def at_strength(self, eps: float | None) -> np.ndarray:
        """``delta`` rescaled to budget ``eps`` (8-bit steps); ``None`` keeps the file's budget."""
        if eps is None or eps == self.eps:
            return self.delta
        check_eps(eps)
        # In float64 and bounded: a file with a tiny budget (1e-40) made the float32 scale
        # infinite, and the pattern's rounding within BOUND_TOLERANCE grows with the scale.
        scaled = self.delta.astype(np.float64) * (eps / self.eps)
        return np.clip(scaled, -eps / 255, eps / 255).astype(np.float32)


def whole_steps(eps: float) -> int:
    """The most whole 8-bit steps a budget of ``eps`` allows (4 for 4.6): what an 8-bit pixel
    can change by without going over it."""
    return math.floor(eps + 1e-6)


def changes_a_pixel(steps: float) -> bool:
    """Whether a change of at most ``steps`` 8-bit steps allows a whole step somewhere (below
    that, every output is an unchanged copy)."""
    return whole_steps(steps) > 0


def check_eps(eps: float) -> None:
    """Refuse budgets outside (0, MAX_EPS] 8-bit steps."""
    if not np.isfinite(eps) or not 0 < eps <= MAX_EPS:
        raise PerturbationFileError(
            f"Strength {eps} is out of range: it must be above 0 and at most {MAX_EPS:g} "
            "(in 8-bit steps; 4 is low, 8 medium, 16 high)."
        )


def _validate_delta(delta: np.ndarray, eps: float, where: str) -> np.ndarray:
    if delta.dtype.kind != "f":
        raise PerturbationFileError(
            f"{where}: tensor 'delta' has dtype {delta.dtype}; a perturbation must be "
            "floating point."
        )
    if delta.ndim != 3 or delta.shape[0] != 3:
        raise PerturbationFileError(
            f"{where}: tensor 'delta' has shape {tuple(delta.shape)}; expected (3, height, width)."
        )
    height, width = delta.shape[1:]
    if not (8 <= height <= MAX_SIDE and 8 <= width <= MAX_SIDE):
        raise PerturbationFileError(
            f"{where}: pattern size {height}x{width} is outside 8..{MAX_SIDE} pixels per side."
        )
    delta = delta.astype(np.float32, copy=False)
    if not np.isfinite(delta).all():
        raise PerturbationFileError(f"{where}: tensor 'delta' contains NaN or infinite values.")
    peak = float(np.abs(delta).max())
    if peak > eps / 255 + BOUND_TOLERANCE:
        raise PerturbationFileError(
            f"{where}: the pattern reaches {peak * 255:.2f}/255, over its stated budget of "
            f"{eps:g}/255."
        )
    return delta


def save_perturbation(
    path: str | Path, delta: np.ndarray, *, eps: float, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Validate and write a perturbation file atomically; returns the path written.

    Args:
        path: destination ``.safetensors`` file (its folder is created).
        delta: float array (3, H, W) in pixel units of a [0, 1] image, |delta| <= eps/255.
        eps: budget in 8-bit steps, in (0, 64].
        metadata: anything JSON-serialisable (name, description, encoder, objective, figures...).
    """
    from safetensors.numpy import save

    path = Path(path)
    check_eps(eps)
    delta = _validate_delta(np.asarray(delta), eps, "Cannot save perturbation")
    header: dict[str, str] = {}
    json_keys: list[str] = []
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            header[key] = value
        else:
            header[key] = json.dumps(value, default=str)
            json_keys.append(key)
    header.update(
        format=FORMAT_NAME,
        format_version=str(FORMAT_VERSION),
        eps=repr(float(eps)),
        height=str(delta.shape[1]),
        width=str(delta.shape[2]),
        json_keys=json.dumps(sorted(json_keys)),
    )
    payload = save({"delta": np.ascontiguousarray(delta)}, metadata=header)
    atomic_write(path, payload)
    return path


def safetensors_head(
    path: Path, kind: str = "perturbation", made_by: str = "'spdesk train'"
) -> bytes:
    """The first 16 bytes of a ``kind`` file, after refusing what it cannot be (a folder, a missing
    file, a pickle, a PyTorch checkpoint) with a message that says what it is. Perturbation
    and generator files share it, so each wrong file is named alike whichever was asked for."""
    if path.is_dir():
        raise PerturbationFileError(f"{path} is a folder, not a {kind} file.")
    if not path.is_file():
        if path.exists():  # a named pipe, a device (/dev/zero): reading it may never end
            raise PerturbationFileError(
                f"{path} is not a {kind} file: it is a special file (a named pipe or a "
                "device), which spdesk does not read."
            )
        raise PerturbationFileError(
            f"{kind[0].upper()}{kind[1:]} file not found: {path}",
            hint=_library_hint() if kind == "perturbation" else None,
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise PerturbationFileError(f"Cannot read {path}: {error.strerror}.") from error
    _sniff(path, head, kind, made_by)
    return head


def _sniff(path: Path, head: bytes, kind: str, made_by: str) -> None:
    """Refuse the usual wrong files with a message that says what they are. A safetensors
    file is recognised first: its header's length may itself start with a pickle's or a zip's
    bytes (a 1664-byte header starts b"\\x80\\x06", a 19280-byte one b"PK")."""
    if _is_safetensors_head(head):
        return
    if head[:2] == b"PK":
        raise PerturbationFileError(
            f"{path.name} is a PyTorch/zip checkpoint, not a {kind} file. spdesk never "
            f"unpickles files; {kind}s are .safetensors files made by {made_by}."
        )
    if head[:1] == b"\x80":
        raise PerturbationFileError(
            f"{path.name} is a Python pickle. spdesk never loads pickles (they can run code); "
            f"use a .safetensors {kind} made by {made_by}."
        )
    if len(head) < 8:
        raise PerturbationFileError(f"{path.name} is too short to be a {kind} file.")
    raise PerturbationFileError(f"{path.name} is not a safetensors {kind} file.")


def _is_safetensors_head(head: bytes) -> bool:
    """Whether ``head`` starts as safetensors does: a plausible header length, then ``{``."""
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 1 < header_len <= 100_000_000 and head[8:9] == b"{"


_MAX_HEADER = 16 << 20  # metadata is small; a larger header is not a perturbation file
# The largest file a pattern can make: a float32 delta of MAX_SIDE squared, and its header.
MAX_FILE_BYTES = 3 * MAX_SIDE * MAX_SIDE * 4 + 8 + _MAX_HEADER


def _check_header(path: Path, head: bytes) -> None:
    """Refuse a ``delta`` of the wrong type, shape or size from the header alone."""
    (length,) = struct.unpack("<Q", head[:8])
    if length > _MAX_HEADER:
        raise PerturbationFileError(f"{path.name} has a {length}-byte header: not a perturbation.")
    try:
        with path.open("rb") as handle:
            handle.seek(8)
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as error:
        raise PerturbationFileError(
            f"{path.name} is damaged: its header cannot be read."
        ) from error
    info = header.get("delta") if isinstance(header, dict) else None
    if not isinstance(info, dict):
        check_complete(path, length, header)
        return  # no 'delta': said precisely after opening
    dtype, shape = info.get("dtype"), info.get("shape")
    if dtype not in _READABLE_DTYPES:
        stored = _DTYPE_NAMES.get(str(dtype), repr(dtype))
        raise PerturbationFileError(
            f"{path.name} stores 'delta' as {stored}; spdesk reads float32 or float16.",
            hint="Save the pattern as float32 (what 'spdesk train' writes).",
        )
    if not (isinstance(shape, list) and len(shape) == 3 and shape[0] == 3):
        shown_shape = tuple(shape) if isinstance(shape, list) else shape
        raise PerturbationFileError(
            f"{path.name}: tensor 'delta' has shape {shown_shape}; expected (3, height, width)."
        )
    height, width = shape[1:]
    if not all(isinstance(v, int) and 8 <= v <= MAX_SIDE for v in (height, width)):
        raise PerturbationFileError(
            f"{path.name}: pattern size {height}x{width} is outside 8..{MAX_SIDE} pixels per "
            "side; nothing was loaded."
        )
    check_complete(path, length, header)


def check_complete(path: Path, header_length: int, header: object) -> None:
    """Refuse a file that ends before the data its header lists (a copy or a download cut
    short), named as such: safetensors' own words were "incomplete metadata, file not fully
    covered"."""
    if not isinstance(header, dict):
        return
    ends = [
        info["data_offsets"][1]
        for name, info in header.items()
        if name != "__metadata__"
        and isinstance(info, dict)
        and isinstance(info.get("data_offsets"), list)
        and len(info["data_offsets"]) == 2
        and isinstance(info["data_offsets"][1], int)
    ]
    needed = 8 + header_length + max(ends, default=0)
    try:
        size = path.stat().st_size
    except OSError:
        return  # said where it is read
    if size < needed:
        raise PerturbationFileError(
            f"{path.name} is incomplete: it holds {size:,} bytes of the {needed:,} it needs "
            "(a copy or a download cut short?).",
            hint="Copy the file again from where it came from, or make it again.",
        )


_READABLE_DTYPES = ("F32", "F16")
_DTYPE_NAMES = {"F64": "float64", "BF16": "bfloat16", "F8_E4M3": "float8", "F8_E5M2": "float8"}


def _decode_metadata(raw: Mapping[str, str]) -> dict[str, Any]:
    try:
        listed = json.loads(raw.get("json_keys", "[]"))
    except json.JSONDecodeError:
        listed = []
    json_keys = (
        {key for key in listed if isinstance(key, str)} if isinstance(listed, list) else set()
    )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in json_keys:
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def check_perturbation_file(path: Path) -> bytes:
    """Refuse, before reading it whole, what cannot be a perturbation file (a folder, a named
    pipe, a pickle, a file larger than any pattern); returns its first 16 bytes."""
    head = safetensors_head(path)
    _check_size(path)
    return head


def _weights_problem(handle: Any, keys: list[str]) -> str | None:
    """Why the tensors of an open safetensors ``handle`` are not weights that load (one that
    cannot be read, or holds other than finite numbers), None when they are."""
    for key in keys:
        try:
            weight = handle.get_tensor(key)
            usable = np.issubdtype(weight.dtype, np.floating) and bool(np.isfinite(weight).all())
        except (TypeError, ValueError) as error:  # SafetensorError is a ValueError
            return f"weight {key}: {error}"
        if not usable:
            return f"weight {key} is not a number"
    return None


def generator_weights_problem(path: Path) -> str | None:
    """Why the weights of the generator file ``path`` would be refused when it loads (see
    :func:`_weights_problem`), None when they read as numbers."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return _weights_problem(handle, list(handle.keys()))
    except (OSError, TypeError, ValueError) as error:
        return str(error)


def _generator_given(path: Path, handle: Any, keys: list[str]) -> PerturbationFileError:
    """The error for a protection generator chosen as a pattern: it is recommended with
    --generator only where its weights read as numbers (a damaged one was recommended, and
    --generator then refused it: "weight net.0.bias has a wrong shape or value")."""
    choose = "Choose a pattern made by the app's Train personal pattern… or spdesk train"
    problem = _weights_problem(handle, keys)
    if problem is not None:
        return PerturbationFileError(
            f"{path.name} is a damaged protection generator ({problem}), and not a universal "
            "perturbation.",
            hint=f"{choose}.",
        )
    return PerturbationFileError(
        f"{path.name} is a protection generator (photo-specific mode), not a universal "
        "perturbation.",
        hint=f"{choose}; a generator is used with spdesk protect --generator.",
    )


def load_perturbation(path: str | Path) -> Perturbation:
    """Load and validate a perturbation file; every problem is a precise PerturbationFileError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    head = check_perturbation_file(path)
    _check_header(path, head)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw_meta = handle.metadata() or {}
            keys = list(handle.keys())
            if raw_meta.get("format") == GENERATOR_FORMAT:
                raise _generator_given(path, handle, keys)
            if "delta" not in keys:
                found = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if keys[5:] else "")
                raise PerturbationFileError(
                    f"{path.name} has no tensor named 'delta' (found: {found or 'none'}): it "
                    "is not a perturbation file."
                )
            delta = handle.get_tensor("delta")
    except (SafetensorError, TypeError, ValueError) as error:
        raise PerturbationFileError(f"{path.name} is damaged or unsupported: {error}") from error
    if raw_meta.get("format") != FORMAT_NAME:
        refuse_training_checkpoint(path, raw_meta, "a universal perturbation")
        raise PerturbationFileError(
            f"{path.name} is a safetensors file but not an spdesk perturbation "
            f"({format_said(raw_meta)})."
        )
    version = raw_meta.get("format_version", "")
    if version != str(FORMAT_VERSION):
        raise PerturbationFileError(
            f"{path.name} uses perturbation format version {version!r}; this spdesk reads "
            f"version {FORMAT_VERSION}.",
            hint="Update spdesk, or retrain the perturbation with this version.",
        )
    try:
        eps = float(raw_meta["eps"])
        check_eps(eps)
    except (KeyError, ValueError, PerturbationFileError) as error:
        raise PerturbationFileError(f"{path.name} has no valid 'eps' budget.") from error
    delta = _validate_delta(delta, eps, path.name)
    return Perturbation(delta=delta, eps=eps, metadata=_decode_metadata(raw_meta), path=path)


def format_said(meta: Mapping[str, str]) -> str:
    """The format a foreign safetensors file declares, in words ("format None" read as code)."""
    declared = meta.get("format")
    return f"its format is {declared!r}" if declared else "it carries no spdesk format tag"


def refuse_training_checkpoint(path: Path, meta: Mapping[str, str], wanted: str) -> None:
    """Name spdesk train's own checkpoint (``--checkpoint``, the resume key in its header) when
    it is chosen where a finished file is expected, instead of an unknown format."""
    if "resume_key" in meta:
        raise PerturbationFileError(
            f"{path.name} is a training checkpoint of spdesk train (its steps so far, to resume "
            f"from), not {wanted}.",
            hint="Choose the file spdesk train saved with --out (or in your library); to finish "
            "the training, run it again with --resume.",
        )


def _check_size(path: Path) -> None:
    """Refuse a file larger than the largest pattern plus its header: the job hashes the file,
    and a 2 GB file of one small pattern and junk beside it took 2 GB of memory."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PerturbationFileError(
            f"{path.name} is {size / 2**20:.0f} MiB; a perturbation file is at most "
            f"{MAX_FILE_BYTES >> 20} MiB ({MAX_SIDE}x{MAX_SIDE} pixels): it is not one."
        )


def header_metadata(path: Path) -> dict[str, str]:
    """A perturbation file's string metadata, read from its header alone (no tensors, no
    checks: for labels in lists, where a broken file just shows its file name). Only a regular
    file is opened: a named pipe at the chosen pattern's path blocked the app at every start."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return {}
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= 1_000_000:
                return {}
            meta = json.loads(handle.read(size)).get("__metadata__", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def perturbation_label(path: Path) -> str:
    """The name stored in a perturbation file's header (file names lose "±" and such)."""
    name = header_metadata(path).get("name")
    return name if isinstance(name, str) and name.strip() else path.stem


def perturbation_gain(path: Path) -> float | None:
    """The held-out effect measured at training, in multiples of random noise's; None if unknown."""
    try:
        return float(header_metadata(path)["gain_over_sign"])
    except (KeyError, TypeError, ValueError):
        return None


def check_destination(path: Path, *, force: bool = False) -> None:
    """Refuse, before any work, a place a perturbation file cannot or must not be saved: see
    :func:`spdesk.core.files.check_save_path`. An existing file is never replaced without
    ``force``, a pattern trained before neither (it was, without a word)."""
    check_save_path(path, "perturbation", load_perturbation, force=force)
    if not force and Path(path).exists():  # a perturbation: anything else was refused above
        raise ConfigError(
            f"{shown(path)} already holds a pattern (“{perturbation_label(path)}”), so it was "
            "not replaced.",
            hint="Choose another file name, or add --force to replace it.",
        )


def bundled_perturbation_path() -> Path:
    """The perturbation that ships with spdesk (read through importlib.resources)."""
    ref = resources.files("spdesk.resources").joinpath("perturbations", "default.safetensors")
    return Path(str(ref))


def library_perturbations() -> list[Path]:
    """The user's trained perturbations, newest first."""
    folder = library_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.safetensors") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def _library_hint() -> str | None:
    """The patterns a command line may name instead of a file, for a file that was not found."""
    names = [path.stem for path in library_perturbations()]
    if not names:
        return None
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return f"Patterns in your library, by name (newest first): {', '.join(names[:8])}{more}."


def library_path_for(name: str) -> Path:
    """Where a perturbation called ``name`` is saved in the library (name made file-safe, and
    cut to fit any disk's 255-byte names: a longer one was "File name too long", an unexpected
    error). Names differing only in what is made safe share a file: see
    :func:`library_name_at`. A pattern an earlier spdesk filed under its former safe name
    (:func:`_former_library_path`) stays in that file: saved again, it is not doubled."""
    safe = _fitted("".join("_" if _unsafe_in_names(c) else c for c in name))
    if safe.split(".")[0].strip().upper() in _WINDOWS_DEVICES:  # "con.safetensors" is a device
        safe = f"_{safe}"
    path = _library_file(safe)
    if path.exists():
        return path
    former = _former_library_path(name)
    return former if former.is_file() and perturbation_label(former) == name else path


# What Windows refuses in a name ("/" also separates folders everywhere, ":" on macOS's
# Finder): every other readable character is kept ("Portraits ±8" was filed "Portraits _8").
_UNSAFE_CHARACTERS = frozenset('<>:"/\\|?*')
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)}
)


def _unsafe_in_names(character: str) -> bool:
    """Whether a file name must not hold ``character``: those Windows refuses, and control
    and other invisible characters (Unicode's "C" categories), which no name shows."""
    import unicodedata

    return character in _UNSAFE_CHARACTERS or unicodedata.category(character).startswith("C")


def _former_library_path(name: str) -> Path:
    """Where spdesk before 2026-12-06 filed ``name``: every character other than letters,
    digits and "-_ ." made "_" (its patterns are found by name there still)."""
    return _library_file(_fitted("".join(c if c.isalnum() or c in "-_ ." else "_" for c in name)))


def _fitted(stem: str) -> str:
    """``stem`` cut to a whole character within any disk's name length, without the leading
    and trailing spaces and dots some systems drop."""
    return stem.encode("utf-8")[:LIBRARY_STEM_BYTES].decode("utf-8", "ignore").strip(" .")


def _library_file(stem: str) -> Path:
    return library_dir() / f"{stem or 'unnamed'}.safetensors"


def perturbation_reference(text: str) -> Path:
    """What a command line's ``--perturbation TEXT`` names: a file at that path, else a pattern
    of the user's library called ``TEXT`` (as the app lists it), else the path as given (its
    error then names it). Only a bare name can mean the library: a path with a folder never
    does."""
    path = Path(text)
    if os.path.lexists(path) or path.name != text:
        return path
    saved = library_path_for(text)  # under the former safe name too
    return saved if saved.is_file() else path


LIBRARY_STEM_BYTES = 200  # and ".safetensors": under the 255 bytes every common disk allows


def library_name_at(name: str) -> str | None:
    """The name of the pattern already in the library at ``name``'s file (it may be another
    name: "Portraits ±8" and "Portraits ?8" share one), or None when that file is free."""
    path = library_path_for(name)
    return perturbation_label(path) if path.exists() else None
