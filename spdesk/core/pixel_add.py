"""Adding a quantised canvas to a photo, clipped to 0..255, without holding Python's lock.

Pillow's ``ImageChops.add`` holds Python's lock for its whole run (0.1 s on a 24 MP photo), so a
job's other workers, whose decoding and encoding release the lock, wait for it: on 12 and 24 MP
photos that wait was most of what universal mode cost beyond decoding and encoding
(docs/measurements.md, "Speed of universal mode"). Pillow lends an image's pixel memory through
the Arrow C data interface when the image sits in one block of memory; numpy then adds in bands
of rows, releasing the lock inside each operation, into a new Pillow image: the same bytes as
``ImageChops.add``. An image Pillow cannot lend takes ``ImageChops.add``: before Pillow 11.3
(11.2.1 never frees memory it lent), with rows aligned by ``PILLOW_ALIGNMENT`` (Pillow 11.3-12
lends the block's start, not the first row's), an empty image (Pillow 11.3-12 crashes lending
it), an image in several blocks.

Pillow allocates an image larger than its block size (16 MiB by default: a 4 MP photo) in
several blocks. :func:`allow_lending` raises that size, so that photos decoded afterwards sit in
one block; Pillow still allocates only what an image needs. A ``PILLOW_BLOCK_SIZE`` the user set
is theirs and left alone, and so is the block size where Pillow keeps freed blocks for reuse
(``PILLOW_BLOCKS_MAX``): it would keep whole photos then, not 16 MiB blocks.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import PIL
from PIL import Image, ImageChops
from PIL import _imaging as pillow_core  # Image.core, under the name its type stub gives

ZERO = 128  # the canvas level that stands for "no change"
_ONE_BLOCK = 1 << 30  # bytes: more than any photo under spdesk's default pixel limit (179 MP x 4)
_BAND_BYTES = 1 << 20  # of int16 per band: small enough to stay in cache, large enough to be cheap
_allow_lock = threading.Lock()
_allowed = False


def allow_lending() -> None:
    """Have Pillow allocate each image in one block from now on (see the module's text). Once
    per process; leaves Pillow's settings alone where the user or the host program tuned them
    (``PILLOW_BLOCK_SIZE``, kept blocks)."""
    global _allowed
    with _allow_lock:
        if _allowed:
            return
        _allowed = True
        if "PILLOW_BLOCK_SIZE" in os.environ or not hasattr(pillow_core, "set_block_size"):
            return
        if pillow_core.get_blocks_max() == 0:
            pillow_core.set_block_size(max(pillow_core.get_block_size(), _ONE_BLOCK))


def add_canvas(image: Image.Image, canvas: Image.Image) -> Image.Image:
    """``image + canvas - 128`` clipped to 0..255, as a new RGB image; both RGB, one size.

    Byte for byte ``ImageChops.add(image, canvas, scale=1.0, offset=-128)``.
    """
    if image.mode != "RGB" or canvas.mode != "RGB" or image.size != canvas.size:
        raise ValueError(f"add_canvas takes two RGB images of one size, got {image} and {canvas}")
    allow_lending()
    if not _may_lend(image):  # known before a copy is made
        return ImageChops.add(image, canvas, scale=1.0, offset=-ZERO)
    out = Image.new("RGB", image.size, None)  # not filled: every byte is written below
    with ExitStack() as stack:
        lent = (stack.enter_context(lent_pixels(each)) for each in (image, canvas, out))
        pixels, changes, result = lent
        if pixels is None or changes is None or result is None:
            return ImageChops.add(image, canvas, scale=1.0, offset=-ZERO)
        _add_in_bands(pixels, changes, result)
    return out


def _add_in_bands(pixels: np.ndarray, changes: np.ndarray, result: np.ndarray) -> None:
    rows = max(1, _BAND_BYTES // (2 * pixels[0].size))
    band = np.empty((rows, *pixels.shape[1:]), np.int16)
    for top in range(0, len(pixels), rows):
        bottom = min(top + rows, len(pixels))
        sums = band[: bottom - top]
        np.add(pixels[top:bottom], changes[top:bottom], out=sums, dtype=np.int16)
        sums -= ZERO
        np.clip(sums, 0, 255, out=sums)
        result[top:bottom] = sums


def _pillow_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", PIL.__version__)[:2])


_LENDS = _pillow_version() >= (11, 3)


def _may_lend(image: Image.Image) -> bool:
    """Whether this Pillow lends ``image`` safely, if it lends it at all (see the module's text)."""
    aligned = getattr(pillow_core, "get_alignment", lambda: 1)() != 1
    return _LENDS and not aligned and image.width > 0 and image.height > 0


@contextmanager
def lent_pixels(image: Image.Image) -> Iterator[np.ndarray | None]:
    """An RGB image's pixel memory as a (height, width, 4) uint8 array (the fourth byte is
    Pillow's padding), valid inside the block; ``None`` where Pillow cannot lend it safely."""
    if not _may_lend(image):
        yield None
        return
    try:
        schema, array = image.__arrow_c_array__()  # holds the memory until both are released
    except (AttributeError, ValueError):  # no Arrow export; an image in several blocks
        yield None
        return
    yield _as_array(schema, array, image)


def _as_array(schema: object, array: object, image: Image.Image) -> np.ndarray | None:
    """The pixel buffer an RGB image's Arrow export describes: a fixed-size list of 4 uint8
    per pixel, no offset; anything else is not read."""
    described = _ArrowSchema.from_address(_capsule_pointer(schema, b"arrow_schema"))
    exported = _ArrowArray.from_address(_capsule_pointer(array, b"arrow_array"))
    if described.format != b"+w:4" or described.n_children != 1 or exported.n_children != 1:
        return None
    if described.children[0].contents.format != b"C":
        return None
    child = exported.children[0].contents
    length = image.width * image.height * 4
    if exported.offset or child.offset or child.n_buffers != 2 or child.length != length:
        return None
    address = child.buffers[1]
    if not address:
        return None
    memory = (ctypes.c_uint8 * length).from_address(address)
    return np.frombuffer(memoryview(memory), np.uint8).reshape(image.height, image.width, 4)


# A prototype of its own: setting restype on ctypes.pythonapi's shared one could clash with
# another library's.
_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)


def _capsule_pointer(capsule: object, name: bytes) -> int:
    return int(_get_pointer(capsule, name))  # raises ValueError for a capsule of another name


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [  # the Arrow C data interface, as its specification lays it out
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArray(ctypes.Structure):
    pass


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]
