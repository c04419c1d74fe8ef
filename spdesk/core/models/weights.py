"""Weights conversion: pickled checkpoints become safetensors, without running their code.

``torch.load(weights_only=True)`` reads plain tensors only: a pickle that would run code to load
is refused (ModelError), even when its sha256 matched the hub's.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

from spdesk.core.errors import ModelError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def load_pickle_weights(path: Path) -> dict[str, Any]:
    """Tensors from a pickle checkpoint, only if ``weights_only=True`` loads it (no code runs)."""
    import pickle

    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as error:
        raise ModelError(
            f"{path.name} is a pickle file that would run code to load; spdesk refuses it.",
            hint="Use the .safetensors version of this model (most are published as both).",
        ) from error
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights.")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"{path.name} holds no weights.")
    return tensors


def save_safetensors(tensors: dict[str, Any], target: Path) -> None:
    """Write ``tensors`` to ``target``. A failed write is an OSError with its errno, as Python's
    own writes raise: safetensors' writer, in Rust, raises SafetensorError even for a full disk.
    The file is written by that writer rather than serialised to bytes first and written by
    Python, which would hold the whole file in memory once more (a converted UNet is GBs)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    # Clone: pickles often share storage between tensors, which safetensors refuses.
    try:
        save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, str(target))
    except SafetensorError as error:
        raise (os_error_of(error, target) or error) from error
    target.chmod(new_file_mode(target.parent))  # the writer makes it 0600


def new_file_mode(folder: Path) -> int:
    """The permission bits a new file in ``folder`` gets (0666 minus the umask), read from one
    made there: reading the umask with ``os.umask`` changes it for every thread meanwhile."""
    probe = folder / f".spdesk-mode-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def give_new_file_modes(folder: Path) -> None:
    """Every file under ``folder`` as readable as a new file: libraries' writers (safetensors)
    make weights 0600, and copies keep their source's modes."""
    mode = new_file_mode(folder)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def os_error_of(error: Exception, target: Path) -> OSError | None:
    """The OSError behind a safetensors write that failed ("Error while serializing: I/O
    error: No space left on device (os error 28)"), or None when it is not one."""
    code = re.search(r"os error (\d+)", str(error))
    if code is None:
        return None
    number = int(code.group(1))
    return OSError(number, os.strerror(number), str(target))


def convert_pickle(source: Path, final: Path) -> None:
    """A verified ``.bin`` as fp16 safetensors at ``final``, then ``source`` is deleted.

    A file refused on loading is deleted too. When the disk fails the write (full, read-only),
    ``source`` stays: it is verified, and the next download converts it without fetching its
    gigabytes again."""
    import torch

    tmp = final.with_name(final.name + ".tmp")
    try:
        tensors = load_pickle_weights(source)
    except BaseException:
        source.unlink(missing_ok=True)
        raise
    # The store keeps fp16 weights, as the hub's fp16 variants.
    half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    try:
        save_safetensors(half, tmp)
        tmp.replace(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    source.unlink(missing_ok=True)
