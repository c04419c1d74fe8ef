"""Batch protection jobs: the call behind ``spdesk protect``, the Protect button and benchmarks.

Modules, in import order:

- :mod:`~spdesk.core.jobs.settings`: what decides the output.
- :mod:`~spdesk.core.jobs.protector`: the per-photo protection step, one class per mode.
- :mod:`~spdesk.core.jobs.fingerprint`: which settings change the output (what a re-run redoes).
- :mod:`~spdesk.core.jobs.events`: the events a job emits and its final report.
- :mod:`~spdesk.core.jobs.scan`: inputs walked into the photos of a job.
- :mod:`~spdesk.core.jobs.naming`: output names and taken names (collision policy).
- :mod:`~spdesk.core.jobs.memory`: the memory budget that admits photos to the pool.
- :mod:`~spdesk.core.jobs.pool`: the ordered worker pool (read, protect, write; publish in order).
- :mod:`~spdesk.core.jobs.job`: :class:`ProtectJob`, which ties them together.
"""

from spdesk.core.jobs.events import (
    UNCHANGED,
    FailReason,
    FileDone,
    FileFailed,
    FileProgress,
    FileSkipped,
    JobCancelled,
    JobFinished,
    JobReport,
    JobStarted,
    LookingForPhotos,
    PhotosFound,
    SkipReason,
)
from spdesk.core.jobs.job import ProtectJob
from spdesk.core.jobs.protector import Protector, build_protector, protect_photo
from spdesk.core.jobs.scan import discover_inputs, scan_inputs
from spdesk.core.jobs.settings import ProtectSettings, default_workers

__all__ = [
    "UNCHANGED",
    "FailReason",
    "FileDone",
    "FileFailed",
    "FileProgress",
    "FileSkipped",
    "JobCancelled",
    "JobFinished",
    "JobReport",
    "JobStarted",
    "LookingForPhotos",
    "PhotosFound",
    "ProtectJob",
    "ProtectSettings",
    "Protector",
    "SkipReason",
    "build_protector",
    "default_workers",
    "discover_inputs",
    "protect_photo",
    "scan_inputs",
]
