"""The per-install secret that seeds photo-specific protection (and keys the names an output
folder's record gives the originals: :class:`spdesk.core.manifest.SourceIds`).

An attacker has spdesk's source and every file it ships, so anything that follows from public
inputs (a file name, a default seed) can be recomputed and undone. The secret noise that the
protection generator gets for a photo is therefore derived, with HMAC-SHA256, from a random key
made once per install (in no file spdesk distributes, never logged, never written into a photo)
and the photo's own pixels. The same photo
protected twice on one install gets the same result (re-runs and resumes are byte-identical);
another install, or anyone without the key, gets unrelated noise.

The key lives in the config folder (``protection.key``, 32 random bytes, owner-only permissions).
``SPDESK_PROTECTION_KEY`` (64 hex digits) overrides it, e.g. for two installs that must protect
alike. The Ray engine sends the driver's key to its workers itself, in their task arguments (over
Ray's connections, encrypted only with Ray's TLS: docs/ray.md), so a cluster running photo mode
must be one the user trusts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

import numpy as np

from spdesk.core.errors import ConfigError, OutputError
from spdesk.core.files import output_error, shown
from spdesk.core.paths import config_dir

KEY_BYTES = 32
ENV_KEY = "SPDESK_PROTECTION_KEY"
BACKUP_ADVICE = (
    "Back up the protection key with your photos and keep it private: it makes each "
    "photo's protection, and lets spdesk recognise the photos it protected before. With "
    "another key, spdesk cannot tell that a photo was protected before, and protects it "
    "again into a second copy."
)
KEY_BACKUP_SHORT = (
    "Back it up with your photos and keep it private (About and diagnostics, F1, says why)."
)
log = logging.getLogger(__name__)
_made_here: Path | None = None  # the key file this process made: a first run, told once


def key_path() -> Path:
    return config_dir() / "protection.key"


def key_made_here() -> Path | None:
    """The key file this process made (the first protection of an install), so
    that the user can be told where it is and to back it up; None when it was there before."""
    return _made_here


def key_made_text(path: Path) -> str:
    """The first run's notice: where the new key is, and why to back it up."""
    return f"Made this install's protection key: {shown(path)}\n{BACKUP_ADVICE}"


def install_key() -> bytes:
    """The install's secret key, made on first use (32 random bytes from the OS)."""
    override = os.environ.get(ENV_KEY)
    if override:
        return _parse_hex(override)
    path = key_path()
    _refuse_what_is_not_a_key(path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return _create(path)
    except OSError as error:  # the config folder is a file, unreadable...
        failure = OutputError(f"Cannot read the protection key {path}: {error.strerror or error}.")
        if isinstance(error, PermissionError):
            failure.hint = (
                "Protecting needs this key: check its owner and permissions. It "
                "must belong to your account and be readable by you (on Linux and macOS: chown "
                f"it to you, then chmod 600 it). Or set {ENV_KEY}."
            )
            raise failure from error
        raise _key_error(failure, path) from error
    if len(key) != KEY_BYTES:
        written = _hex_key(key)  # the key as text: what SPDESK_PROTECTION_KEY takes
        if written is None:
            return _create(path)  # _create names a damaged one
        key = written
    _keep_private(path)
    return key


def _hex_key(data: bytes) -> bytes | None:
    """The key a file holds as 64 hexadecimal digits (someone put the environment variable's
    form there, or restored it from a note), or None."""
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def _refuse_what_is_not_a_key(path: Path) -> None:
    """Name a folder or a broken link where the key belongs: neither is fixed by space or
    permissions (the hint of other failures), only by moving it away."""
    hint = f"Move it out of {path.parent}: spdesk then makes a new key there (or set {ENV_KEY})."
    if path.is_symlink() and not path.exists():
        raise ConfigError(
            f"The protection key {path} is a link to {os.readlink(path)}, which does not exist.",
            hint=hint,
        )
    if path.is_dir():
        raise ConfigError(f"The protection key {path} is a folder, not a file.", hint=hint)


def _keep_private(path: Path) -> None:
    """Make a key that others may read (restored from a backup as 0644, say) owner-only again,
    where it is ours to change; a key that stays readable still works."""
    if os.name != "posix":
        return
    try:
        status = path.stat()
        if status.st_mode & 0o077 and status.st_uid == os.getuid():
            path.chmod(0o600)
            log.info("Made the protection key %s readable by its owner only.", path)
    except OSError:  # a read-only disk: nothing to do about it here
        return


def _parse_hex(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{ENV_KEY} must be {2 * KEY_BYTES} hexadecimal digits.",
            hint='Make one with: python -c "import secrets; print(secrets.token_hex(32))"',
        )
    return key


def _create(path: Path) -> bytes:
    """Write a new key with owner-only permissions, atomically: it is written whole to a file of
    its own, then linked into place, so a process starting meanwhile (a cluster's workers, two
    windows) never reads a half-written key, and a key made meanwhile by another process wins.
    Where the disk has no hard links, the key is created in place (O_EXCL)."""
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        _write_private(tmp, key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _existing(path)
        except OSError:  # no hard links here (FAT, some network disks)
            try:
                _write_private(path, key)
            except FileExistsError:
                return _existing(path)
        _made(path)
        return key
    except OSError as error:
        raise _key_error(output_error(error, path), path) from error
    finally:
        tmp.unlink(missing_ok=True)


def _made(path: Path) -> None:
    global _made_here
    _made_here = path
    log.info("Made this install's protection key %s.", path)


# A process makes and links its temporary key file within milliseconds; one older than this was
# left by a process killed in between (a hard link to a key, or a key never used).
_STALE_AFTER_S = 60.0


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary key files (``.protection.key.<pid>.<hex>``) that killed processes
    left beside ``path``: a key the user deleted, to start a new one, must not live on in a
    hidden copy."""
    now = time.time()
    for leftover in path.parent.glob(f".{path.name}.*"):
        try:
            if now - leftover.lstat().st_mtime > _STALE_AFTER_S:
                leftover.unlink()
        except OSError:  # gone meanwhile, or not ours to delete: harmless
            continue


def _key_error(error: OutputError, path: Path) -> OutputError:
    error.hint = (
        f"Protecting needs the secret key spdesk keeps in {path.parent}: free "
        f"some space there or make it a folder you can write to (or set {ENV_KEY})."
    )
    return error


def _write_private(path: Path, key: bytes) -> None:
    """Create ``path`` (never replacing a file), readable by its owner alone, holding ``key``;
    a write that fails leaves no file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _existing(path: Path) -> bytes:
    existing = path.read_bytes()
    if len(existing) == KEY_BYTES:
        return existing
    if (written := _hex_key(existing)) is not None:
        return written
    raise ConfigError(
        f"The protection key {path} is damaged ({len(existing)} bytes).",
        hint="Delete it: spdesk makes a new one (photos protected before stay protected).",
    )


def photo_seed(key: bytes, pixels: np.ndarray, context: str = "") -> int:
    """A 64-bit seed for one photo: HMAC(key, context, shape, pixels).

    ``context`` separates uses (e.g. the generator's fingerprint), so one key never gives the
    same noise to two different purposes.
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    mac.update(context.encode("utf-8"))
    mac.update(repr(pixels.shape).encode("ascii"))
    mac.update(np.ascontiguousarray(pixels).data)
    return int.from_bytes(mac.digest()[:8], "little")


def key_id(key: bytes) -> str:
    """A public name for a key (16 hex digits): tells keys apart without revealing them."""
    return hmac.new(key, b"spdesk key id", hashlib.sha256).hexdigest()[:16]
