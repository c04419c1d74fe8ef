"""Protect photos on a Ray cluster with the local engine's own code and guarantees.

:class:`RayProtectJob` is :class:`~spdesk.core.jobs.ProtectJob` with one step replaced. The
driver (this process) scans the inputs, skips finished photos and plans every output name and
collision in job order exactly as the local engine does, then hands the planned photos to
the cluster in batches. The modes that run a network go to Ray Data: ``map_batches`` on a pool
of actors (:class:`_Protector`, a callable class that loads photo mode's generator or the
fine-tuning encoder once per actor, on a GPU each where the cluster has them or
:attr:`RayOptions.num_gpus` asks; see :func:`plan_placement`). Universal mode loads nothing
worth an actor and runs as plain Ray tasks (:func:`_protect_in_task`), without Ray Data (no
module of it to import, no helper actor to start): the cluster's worker processes each build
the pattern once per job, and the driver shows Ray's ``tqdm_ray`` progress bar. Each batch
goes through the local engine's per-photo loop (read, protect, encode into an fsync'ed
temporary file, publish atomically, record) and is recorded in a manifest shard of its own; the
driver merges the shards into the output folder's manifest when it closes it (or the next job,
of either engine, does, after a kill), so a re-run with either engine skips what is done.
Per-photo failures come back as the local engine's records. A cancel stops new batches from
starting; the running ones (a batch per call, up to 64 photos) stop between photos: the
driver raises a :class:`StopSign` (a small actor) as soon as the job stops, which the workers
look for, and every photo they finished is recorded.

The engine is mode-agnostic: workers receive the job's settings and run the same per-photo step
the local engine runs for them. Inputs and outputs are paths that every node can reach (one
machine, or a shared NFS-style folder) or object-store URLs (every node reads and writes through
the job's :mod:`~spdesk.core.stores` store, file system and credentials sent to it). Ray is
imported only here, and only when a job runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spdesk.core import errors
from spdesk.core.discovery import InputPhoto
from spdesk.core.distributed.busy import BusyClock, Reading, TimedProtector, busy_share, keep_latest
from spdesk.core.errors import ConfigError, EngineError, SpdeskError, pip_hint
from spdesk.core.events import CancelToken, Event, EventSink, ignore_events
from spdesk.core.jobs import (
    FileDone,
    FileFailed,
    FileSkipped,
    JobReport,
    ProtectJob,
    ProtectSettings,
)
from spdesk.core.jobs.events import FailReason, SkipReason
from spdesk.core.jobs.naming import Target
from spdesk.core.jobs.pool import JobRun, _Planned, _Task
from spdesk.core.jobs.protector import Protected, Protector, build_protector
from spdesk.core.keys import ENV_KEY, install_key
from spdesk.core.logs import console_handlers, logger_to_log_only
from spdesk.core.manifest import Manifest, SourceSignature
from spdesk.core.perturbation import Perturbation
from spdesk.core.stores import FolderStore, FsspecStore, Store

log = logging.getLogger(__name__)

# The oldest Ray the engine's tests passed on (2.40.0, beside pyarrow 26); Ray 2.20 and older
# do not load Ray Data beside today's pyarrow ("module 'pyarrow' has no attribute
# 'PyExtensionType'"). The [ray] extra's floor in pyproject.toml says the same.
RAY_FLOOR = "2.40"
# What spdesk's [ray] extra installs (pyproject.toml; a test keeps the two alike), named
# package by package: "spdesk[ray]" would be looked up on PyPI, not where this spdesk came from.
RAY_REQUIREMENTS = ("ray[data,client]>=2.40", "fsspec>=2024.12")
INSTALL_HINT = "Install it with: pip install " + " ".join(f'"{r}"' for r in RAY_REQUIREMENTS)
ADDRESS_HINT = "Check the address (auto, or ray://HOST:10001) and that the cluster is up."
# How long the job waits for a HOST:PORT address to answer before saying it cannot be reached
# (Ray's own connect retries without end, deaf to Ctrl-C).
CONNECT_SECONDS = 5.0
# File systems that live in one process's memory: Ray's workers, other processes, would read
# and write a memory of their own (fsspec's memory://, pyarrow's mock file system).
_IN_PROCESS = {"memory", "mock"}

# One photo's outcome from a worker, as JSON text: the event, why the job stopped ("" if it
# did not), and the error the worker could not start with ("null" if none).
_Row = tuple[str, str, str]
# A batch's outcomes and its worker's reading of how busy it is (see busy.py).
_Batch = tuple[list[_Row], Reading]


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs on Ray.

    Attributes:
        address: the cluster. None starts a local Ray instance for the job (or uses the one
            this process has already started, or the one ``RAY_ADDRESS`` names); "auto" joins
            the cluster this machine belongs to (``ray start``); "ray://HOST:10001" connects
            through Ray Client.
        num_cpus: CPU workers (actors or tasks, one CPU each) protecting photos; None uses
            every CPU of the cluster. A local instance started for the job gets this many CPUs.
        num_gpus: GPU actors (one GPU each) for the modes that run a network (photo mode's
            generator, per-photo fine-tuning); None uses every GPU of the cluster; 0 runs them
            on CPU workers.
        batch_size: photos per Ray batch at most (64: fewer batches cost less of Ray's time;
            smaller when the job has too few photos to give every worker a batch); each batch
            is recorded in a manifest shard.
        threads: photos in flight in each worker, so that decoding, protecting and encoding
            overlap (2; the command line's ``--workers``); the job's settings take it as their
            ``workers``, which the driver's own default (its cores + 1) would misname.
        progress: show Ray's progress bars (Ray Data's for actors, ``tqdm_ray`` for tasks).
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    batch_size: int = 64
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"--num-cpus must be 1 or more, got {self.num_cpus}.")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ConfigError(f"--num-gpus must be 0 or more, got {self.num_gpus}.")
        if not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"The Ray batch must hold 1 to 4096 photos, got {self.batch_size}.")
        if not 1 <= self.threads <= 32:
            raise ConfigError(f"Threads per worker must be 1 to 32, got {self.threads}.")


@dataclass
class RayStats:
    """How the cluster part of a job went (for the final report)."""

    workers: int = 0
    worker_kind: str = "CPU"
    plan_seconds: float = 0.0
    protect_seconds: float = 0.0
    first_batch_seconds: float | None = None  # until the first batch came back (start-up)
    protected: int = 0
    # Each worker's seconds computing and alive (its latest reading: see busy.py).
    readings: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @property
    def photos_per_second(self) -> float | None:
        """Photos protected per second while the cluster worked (None before it did)."""
        return self.protected / self.protect_seconds if self.protect_seconds > 0 else None

    @property
    def busy_share(self) -> float | None:
        """The share of the workers' time (from their first batch to their last) spent in
        the protector (on a GPU actor, the GPU's work); the rest they waited for input (reading,
        decoding, writing, Ray). None before a batch came back."""
        return busy_share(self.readings.values())

    def busy_text(self) -> str:
        """``workers busy B% of their time (idle I% waiting for input)``, or ""."""
        share = self.busy_share
        if share is None:
            return ""
        return f"workers busy {share:.0%} of their time (idle {1 - share:.0%} waiting for input)"

    def text(self) -> str:
        rate = self.photos_per_second
        speed = f" ({rate:.2f} photos/s)" if rate is not None else ""
        busy = f"; {self.busy_text()}" if self.busy_share is not None else ""
        return (
            f"Ray: {self.protected} photo(s) in {self.protect_seconds:.1f} s{speed} on "
            f"{self.workers} {self.worker_kind} worker(s){busy}; planning took "
            f"{self.plan_seconds:.1f} s."
        )

    def to_dict(self) -> dict[str, Any]:
        rate = self.photos_per_second
        return {
            "engine": "ray",
            "workers": self.workers,
            "worker_kind": self.worker_kind,
            "plan_seconds": round(self.plan_seconds, 3),
            "protect_seconds": round(self.protect_seconds, 3),
            "first_batch_seconds": _rounded(self.first_batch_seconds),
            "protected": self.protected,
            "photos_per_second": _rounded(rate),
            "workers_busy_seconds": round(sum(b for b, _a in self.readings.values()), 3),
            "workers_alive_seconds": round(sum(a for _b, a in self.readings.values()), 3),
            "workers_busy_share": _rounded(self.busy_share),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class Placement:
    """Where a job's actors run, decided on the driver from the cluster's resources.

    Attributes:
        kind: "GPU" (one GPU per actor) or "CPU" (one CPU per actor).
        workers: actors at most (fewer when the job has fewer batches).
        resources: what each actor asks Ray for (``num_cpus``, ``num_gpus``).
        device: the settings' device on the actors ("cuda" on GPU actors, "cpu" on CPU actors
            of a mode that runs a network); it enters photo mode's fingerprint on the driver.
        actors: a pool of actors that load the mode's network once each; False for universal
            mode, which loads nothing worth keeping: plain Ray tasks on the cluster's worker
            processes, which a running cluster keeps warm between jobs (no process to start).
    """

    kind: str
    workers: int
    resources: dict[str, float]
    device: str
    actors: bool = True


def plan_placement(
    settings: ProtectSettings, options: RayOptions, cluster: Mapping[str, float]
) -> Placement:
    """The actors for a job on a cluster with ``cluster`` resources (``ray.cluster_resources()``):
    a GPU each for the modes that run a network where GPUs are asked for (``num_gpus``) or, by
    default, where the cluster has them; else a CPU each. Never more than the cluster holds:
    such actors would wait forever."""
    gpus = _gpu_workers(settings, options, int(cluster.get("GPU", 0)))
    device = settings.device
    if gpus:
        device = "cuda" if device == "auto" else device
        return Placement("GPU", gpus, {"num_cpus": 1, "num_gpus": 1}, device)
    if settings.mode != "universal" and device == "auto":
        device = "cpu"  # a CPU actor sees no GPU (Ray hides them), whatever the driver has
    cpus = max(1, int(cluster.get("CPU", 1)))
    workers = min(options.num_cpus or cpus, cpus)
    return Placement("CPU", workers, {"num_cpus": 1}, device, settings.mode != "universal")


def _gpu_workers(settings: ProtectSettings, options: RayOptions, available: int) -> int:
    """GPU actors for ``settings`` on a cluster with ``available`` GPUs (0: CPU actors)."""
    network = settings.mode != "universal"
    on_gpu = settings.device == "auto" or settings.device.startswith("cuda")
    if not (network and on_gpu):
        return 0
    wanted = available if options.num_gpus is None else options.num_gpus
    if wanted > available:
        raise ConfigError(
            f"--num-gpus {wanted}: the Ray cluster has {available} GPU(s).",
            hint="Ask for at most that many, add GPU workers to the cluster, or use "
            "--num-gpus 0 to run on CPU workers.",
        )
    if wanted == 0 and settings.device.startswith("cuda"):
        raise ConfigError(
            f"--device {settings.device} needs GPU workers, and this job has none "
            f"(the cluster has {available} GPU(s), --num-gpus {options.num_gpus}).",
            hint="Use --device auto to run on CPU workers, or give the cluster GPUs.",
        )
    return wanted


def import_ray(*, data: bool = False) -> Any:
    """The ``ray`` module (with Ray Data where ``data``), or a named error saying how to
    install it. Universal mode needs no Ray Data: its driver and workers never import it."""
    try:
        import ray
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "ray":
            raise EngineError(
                "Ray is not installed, so the Ray engine cannot run.",
                hint=pip_hint(INSTALL_HINT, "Ray"),
            ) from error
        raise _ray_does_not_load(error) from error
    except Exception as error:  # an old Ray beside newer libraries (numpy, pyarrow)
        raise _ray_does_not_load(error) from error
    if data:
        try:
            import ray.data  # only for the modes that run on actors: slow to start
        except ImportError as error:  # Ray alone, or a dependency of Ray Data missing
            raise EngineError(
                f"Ray is installed without Ray Data (missing module: {error.name or error}), "
                "which the Ray engine runs photo mode and fine-tuning on.",
                hint=pip_hint(f'{INSTALL_HINT} (or: pip install "ray[data]").', "Ray Data"),
            ) from error
        except Exception as error:  # an old Ray beside newer libraries (pyarrow, numpy)
            raise EngineError(
                f"Ray Data {getattr(ray, '__version__', '')} does not load beside the installed "
                f"libraries ({type(error).__name__}: {error}).",
                hint=pip_hint(
                    f'spdesk needs Ray {RAY_FLOOR} or newer: pip install "ray[data]>={RAY_FLOOR}".',
                    "Ray",
                ),
            ) from error
        _ray_data_notes_off_the_terminal()
    return ray


def _ray_does_not_load(error: BaseException) -> EngineError:
    """Ray is installed but its import fails (a library of its own missing, a version that does
    not suit the installed numpy): named with the cause, not called missing."""
    return EngineError(
        f"Ray is installed but does not load ({type(error).__name__}: {error}).",
        hint=pip_hint(
            f'Reinstall it: pip install --force-reinstall "{RAY_REQUIREMENTS[0]}".', "Ray"
        ),
    )


def _ray_data_notes_off_the_terminal() -> None:
    """Ray Data's console lines between spdesk's own are notes for developers ("Dataset ...
    execution finished in 8.21 seconds", "Progress bars disabled. To enable, set
    `ray.data.DataContext...`"); its session log keeps them, and its errors still show."""
    for handler in console_handlers(logging.getLogger("ray.data")):
        handler.setLevel(max(handler.level, logging.ERROR))


class RayProtectJob(ProtectJob):
    """Protect ``inputs`` into ``output_root`` on a Ray cluster (see the module docstring).

    Args:
        inputs: files and folders every node can read, or URLs of an object store
            (``s3://bucket/photos``; see :mod:`spdesk.core.stores`).
        output_root: the output folder, on a file system every node can write, or a URL.
        settings: the same settings the local engine takes (every protection mode).
        options: the cluster and its width (see :class:`RayOptions`).
        filesystem: an fsspec or ``pyarrow.fs`` file system holding the inputs and the output
            (credentials, endpoint), as Ray Data's ``filesystem=``; sent to every worker.
    """

    defers_models = False  # _protector places the job: its device enters the fingerprint

    def __init__(
        self,
        inputs: Sequence[Path | str],
        output_root: Path | str,
        settings: ProtectSettings | None = None,
        options: RayOptions | None = None,
        *,
        filesystem: Any = None,
    ) -> None:
        if filesystem is None:  # paths inside a given file system are already the workers'
            inputs = [_absolute(location) for location in inputs]
            output_root = _absolute(output_root)
        settings = _with_absolute_paths(settings or ProtectSettings())
        super().__init__(inputs, output_root, settings, filesystem=filesystem)
        _refuse_in_process(self.store, "inputs")
        _refuse_in_process(self.output_store, "output")
        self.options = options or RayOptions()
        if _starts_a_local_instance(self.options):  # before anything is written
            _refuse_cpus_this_machine_lacks(self.options.num_cpus)
            _refuse_gpus_this_machine_lacks(self.options.num_gpus)
        # Each worker has the options' photos in flight: the job's settings (its report, --json)
        # say so, not the driver's own default (its cores + 1), which no worker uses.
        self.settings = dataclasses.replace(self.settings, workers=self.options.threads)
        self.stats = RayStats()
        self.placement: Placement | None = None
        self._perturbation: Perturbation | None = None
        self._sessions: contextlib.ExitStack | None = None

    def run(
        self, on_event: EventSink = ignore_events, cancel: CancelToken | None = None
    ) -> JobReport:
        """:meth:`ProtectJob.run` on the cluster; Ray starts (or is joined) when the job first
        needs it and stops with the job."""
        with contextlib.ExitStack() as sessions:
            self._sessions = sessions
            try:
                return super().run(on_event, cancel)
            finally:
                self._sessions = None

    def _ray(self) -> Any:
        """The ``ray`` module, connected to the job's cluster (joined on the first call)."""
        ray = import_ray()
        if self._sessions is not None and not ray.is_initialized():
            self._sessions.enter_context(_session(ray, self.options))
        return ray

    def _place(self) -> Placement:
        """Where the actors run (asks the cluster once)."""
        if self.placement is None:
            self.placement = plan_placement(
                self.settings, self.options, self._ray().cluster_resources()
            )
            self.stats.worker_kind = self.placement.kind
        return self.placement

    def _protector(self, perturbation: Perturbation) -> Protector:
        """The actors build the mode's protector (and load its models); the driver checks that
        Ray is there before anything is written and, for a mode that runs a network, where it
        runs: the kind of device enters photo mode's fingerprint."""
        import_ray(data=self.settings.mode != "universal")  # Ray Data: the actors' modes
        self._perturbation = perturbation
        if self.settings.mode in ("finetune", "photo-finetune"):
            _check_encoder_files_here(self.settings.encoder)
        if self.settings.mode != "universal":
            self.settings = dataclasses.replace(self.settings, device=self._place().device)
        return _OnActors()

    def _process(self, run: JobRun, manifest: Manifest, photos: list[InputPhoto]) -> None:
        started = time.monotonic()
        planned = run.plan(photos)
        manifest.mark_pending([p.key for p in planned], run.fingerprint)
        tasks = self._plan_tasks(run, manifest, planned)
        self.stats.plan_seconds = time.monotonic() - started
        try:
            if tasks and not run._stopping():
                self._execute(self._ray(), run, tasks)
                # A worker killed while writing leaves its temporary file; Ray retries the
                # batch elsewhere, so once every batch is back nothing is writing any more.
                self.output_store.clean_stale_temps(self.output_root)
        finally:
            # Anything without a record (a cancel, a stop, a lost batch) is still to do.
            run.report.pending = [p.source for p in planned if p.key not in run.handled]

    def _plan_tasks(self, run: JobRun, manifest: Manifest, planned: list[_Planned]) -> list[_Task]:
        """The local engine's planning, in job order: skip finished photos, name the rest
        (as one batch: nothing is planned once the job stops)."""
        return [task for batch in run._batches(manifest, planned, len(planned)) for task in batch]

    def _execute(self, ray: Any, run: JobRun, tasks: list[_Task]) -> None:
        """Run the tasks on the cluster and record each photo's outcome as it comes back."""
        # A batch for every worker, then as large as allowed: each costs Ray a task and a shard.
        size = min(self.options.batch_size, math.ceil(len(tasks) / self._place().workers))
        batches = [
            [encode_task(task) for task in tasks[start : start + size]]
            for start in range(0, len(tasks), size)
        ]
        assert self._perturbation is not None
        # The job's StopSign, made before any worker starts (raised at once when it stops).
        stop = ray.remote(num_cpus=0)(StopSign).remote()
        protector = {
            "output_root": self.output_root,
            "settings": self.settings,  # workers: the photos in flight in each worker
            "perturbation": self._perturbation,
            "fingerprint": run.fingerprint,
            # Workers on other machines have other config folders: they protect with the
            # driver's install key, so every worker (and a local re-run) writes the same bytes.
            "key": install_key().hex(),
            "inputs": self.store,  # the file systems, credentials included, without listings
            "outputs": self.output_store,
            "stop": stop,
        }
        if self._place().actors:
            back = self._on_actors(batches, protector)
        else:
            back = self._in_tasks(ray, batches, protector, run._stopping)
        started = time.monotonic()
        try:
            with _stop_sign_when(stop, run._stopping):
                for rows, readings in back:
                    if self.stats.first_batch_seconds is None:
                        self.stats.first_batch_seconds = time.monotonic() - started
                    keep_latest(self.stats.readings, readings)
                    for event, stopped, fatal in rows:
                        if (error := _fatal_error(fatal)) is not None:
                            raise error
                        self._record(run, decode_event(event))
                        run.report.stopped = run.report.stopped or stopped or None
                    if run._stopping():  # at once, as the batch that made it came back
                        stop.raise_sign.remote()
        except SpdeskError:
            raise
        except Exception as error:
            raise _engine_error(error) from error
        finally:
            back.close()  # stops what is still running after an error
            self.stats.protect_seconds = time.monotonic() - started
            self.stats.protected = len(run.report.done)

    def _in_tasks(
        self,
        ray: Any,
        batches: list[list[str]],
        protector: dict[str, Any],
        stopping: Callable[[], bool],
    ) -> Generator[tuple[list[_Row], list[Reading]], None, None]:
        """Universal mode: each batch a plain Ray task (no Ray Data: nothing to start but the
        cluster's worker processes), one per worker at a time, in job order. Once the
        job stops, no batch starts and the running ones stop between photos (the driver's
        :class:`StopSign`); what they finished is recorded. Ray retries
        a batch whose worker died; its shard says what the first try finished."""
        remote = ray.remote(_protect_in_task).options(num_cpus=1)
        shared = ray.put(protector)  # sent once, not with every batch
        job = uuid.uuid4().hex
        self.stats.workers = min(self._place().workers, len(batches))
        waiting = iter(batches)
        running: list[Any] = []
        bar = _progress_bar(sum(map(len, batches))) if self.options.progress else None
        try:
            while True:
                while len(running) < self.stats.workers and not stopping():
                    if (batch := next(waiting, None)) is None:
                        break
                    running.append(remote.remote(batch, job, shared))
                if not running:
                    return
                ready, running = ray.wait(running, num_returns=1)
                rows, reading = ray.get(ready[0])
                if bar is not None:
                    bar.update(len(rows))
                yield rows, [reading]
        finally:
            for ref in running:  # an error: nothing more is recorded, so nothing more runs
                ray.cancel(ref)
            if bar is not None:
                bar.close()

    def _on_actors(
        self, batches: list[list[str]], protector: dict[str, Any]
    ) -> Generator[tuple[list[_Row], list[Reading]], None, None]:
        """The modes that run a network: Ray Data's ``map_batches`` on a pool of actors, each
        loading the network once (:class:`_Protector`), with Ray Data's progress bars. After a
        stop the batches come back short (the driver's :class:`StopSign`) and are all drained,
        so that every photo the actors finished is recorded."""
        ray = import_ray(data=True)
        ray.data.DataContext.get_current().enable_progress_bars = self.options.progress
        items = [{"task": task} for batch in batches for task in batch]
        rows = ray.data.from_items(items, override_num_blocks=len(batches))  # a shard each
        results = rows.map_batches(
            _Protector,
            batch_size=len(batches[0]),
            batch_format="numpy",
            fn_constructor_kwargs=protector,
            **self._resources(ray, len(batches)),
        )
        back = iter(results.iter_batches(batch_size=None, batch_format="numpy"))
        try:
            for batch in back:
                columns = (batch["event"], batch["stopped"], batch["fatal"])
                rows = [(str(e), str(s), str(f)) for e, s, f in zip(*columns, strict=True)]
                clocks = zip(batch["worker"], batch["busy"], batch["alive"], strict=True)
                yield rows, [(str(w), float(b), float(a)) for w, b, a in clocks]
        finally:
            close = getattr(back, "close", None)
            if close is not None:
                close()  # stops the pipeline after a cancel or a stop

    def _resources(self, ray: Any, blocks: int) -> dict[str, Any]:
        """Ray Data's pool of actors and what each holds: never more actors than batches."""
        placement = self._place()
        self.stats.workers = min(placement.workers, blocks)
        compute = ray.data.ActorPoolStrategy(size=self.stats.workers)
        return {"compute": compute, **placement.resources}

    def _record(self, run: JobRun, event: Event) -> None:
        """Add a photo's outcome from a worker to the report, as the local engine does."""
        if isinstance(event, FileDone):
            run.report.done.append(event)
        elif isinstance(event, FileSkipped):
            run.report.skipped.append(event)
        elif isinstance(event, FileFailed):
            run.report.failed.append(event)
        else:
            return
        run.handled.add(run.source_id(event.source))
        run.emit(event)


def protect_on_ray(
    inputs: Sequence[Path | str],
    output_root: Path | str,
    settings: ProtectSettings | None = None,
    options: RayOptions | None = None,
    *,
    on_event: EventSink = ignore_events,
    cancel: CancelToken | None = None,
    filesystem: Any = None,
) -> JobReport:
    """Protect photos on a Ray cluster; the Python face of ``spdesk protect --engine ray``.

    Inputs and output are paths or object-store URLs, or paths inside ``filesystem``
    (see :class:`RayProtectJob`).

    Returns the job's report (as the local engine's :meth:`ProtectJob.run`); raises
    :class:`~spdesk.core.jobs.JobCancelled` when cancelled and :class:`EngineError` when Ray is
    missing, unreachable or fails.
    """
    job = RayProtectJob(inputs, output_root, settings, options, filesystem=filesystem)
    return job.run(on_event, cancel)


@contextlib.contextmanager
def _session(ray: Any, options: RayOptions) -> Iterator[None]:
    """Use the Ray instance this process already has, or start/join one for the job."""
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if options.address is not None:
        kwargs["address"] = options.address
    elif not os.environ.get("RAY_ADDRESS"):  # whose cluster refuses resource arguments
        # "local": else Ray joins the cluster a `ray start` left on this machine, which refuses
        # the local instance's options.
        kwargs = {"address": "local", **local_instance_options(options)}
    _check_address(options.address or os.environ.get("RAY_ADDRESS", ""))
    # Ray's note that the instance it starts uses token authentication (its new default: "Set
    # RAY_AUTH_MODE=disabled to opt out") is for whoever runs the cluster: the log keeps it.
    logger_to_log_only("ray._private.authentication.authentication_token_setup")
    stop_handler = _sigterm_handler()
    try:
        with _daemons_in_a_session_of_their_own(kwargs.get("address") == "local"):
            ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise EngineError(
            f"Could not start or reach Ray ({options.address or 'a local instance'}): {error}",
            hint=ADDRESS_HINT,
        ) from error
    finally:
        _restore_sigterm(stop_handler)
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _daemons_in_a_session_of_their_own(starting: bool) -> Iterator[None]:
    """While ``ray.init`` starts a local instance (``starting``): its GCS server, raylet and
    helpers start in a session of their own, out of the driver's process group. A signal to
    the whole group (``kill -TERM -PGID`` from a service manager, a CI cancel, ``timeout``; a
    closed terminal's SIGHUP) then stops the job as Ctrl+C does, the workers finishing their
    photos, instead of killing the cluster under it: the driver waited 60 s for its GCS server
    and died, nothing merged. Ray has no option for it (on Windows it gives them a group of
    their own). Only where the kernel ends them with the driver (Linux's parent-death signal,
    Ray's "fate sharing"): elsewhere Ray's reaper ends them by the group they share."""
    services = _ray_services() if starting and sys.platform.startswith("linux") else None
    if services is None:
        yield
        return
    console_popen = services.ConsolePopen

    class InOwnSession(console_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["start_new_session"] = True  # whether or not Ray passes it itself
            super().__init__(*args, **kwargs)

    services.ConsolePopen = InOwnSession
    try:
        yield
    finally:
        services.ConsolePopen = console_popen


def _ray_services() -> Any:
    """Ray's module that starts its daemons (``ConsolePopen``), where Ray's own fate sharing
    ends them with their parent; None otherwise (another Ray: its daemons stay as they are)."""
    try:
        from ray._private import services, utils
    except ImportError:
        return None
    # Ray's private API: another Ray may lack either; the daemons then stay as Ray starts them.
    detect = getattr(utils, "detect_fate_sharing_support", None)
    fate_sharing = callable(detect) and bool(detect())
    if not (hasattr(services, "ConsolePopen") and fate_sharing):
        log.warning("Ray's daemons share this process group: a signal to it stops them too")
        return None
    return services


def _sigterm_handler() -> Any:
    """The SIGTERM handler before Ray starts (None off the main thread, where none is set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _restore_sigterm(handler: Any) -> None:
    """``ray.init`` installs a SIGTERM handler that exits at once: the command's own, which
    stops after the current step with the summary (as Ctrl+C), is put back."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _check_address(address: str) -> None:
    """Before Ray connects: Ray Client's package for a ``ray://`` address, and an answer from
    a HOST:PORT one (Ray's own connect retries without end, deaf to Ctrl-C and SIGTERM)."""
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (what Ray Client talks through)
        except ImportError as error:
            raise EngineError(
                f"--address {address} connects through Ray Client, which is not installed.",
                hint=pip_hint(
                    'Install it with: pip install "ray[client]" (part of spdesk\'s [ray] extra).',
                    "Ray Client",
                ),
            ) from error
    if address.startswith(("http://", "https://")):
        raise EngineError(
            f"--address {address} is a web address, as the Ray dashboard's (port 8265, for "
            "ray job submit); spdesk joins a cluster by its GCS address or through Ray Client.",
            hint="Give auto on a node of the cluster, HOST:6379, or ray://HOST:10001.",
        )
    host, _colon, port = address.removeprefix("ray://").rpartition(":")
    if not (host and port.isdigit()):  # "auto", "local": Ray finds the cluster itself
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_SECONDS) as probe:
            speaks_http1 = _speaks_http1(probe)
    except OSError as error:
        raise EngineError(
            f"Could not reach the Ray cluster at {address}: {error.strerror or error}.",
            hint=ADDRESS_HINT,
        ) from error
    if speaks_http1:  # Ray would retry there for ever, deaf to Ctrl-C
        raise EngineError(
            f"Something answers at {address}, but not a Ray cluster: it speaks plain HTTP (the "
            "Ray dashboard's port, 8265, does).",
            hint="Give the cluster's GCS address (HOST:6379 by default), ray://HOST:10001, or "
            "auto on a node of the cluster.",
        )


# What an HTTP/2 client says first. Ray's GCS and Ray Client speak gRPC (HTTP/2) and answer it
# with frames of their own; a web server (the dashboard) answers with an HTTP/1 status line.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _speaks_http1(probe: socket.socket) -> bool:
    """Whether the server behind ``probe`` answers an HTTP/2 greeting as an HTTP/1 server
    does. Silence or anything else is not taken as a refusal: only a clear wrong answer is."""
    try:
        probe.settimeout(CONNECT_SECONDS)
        probe.sendall(_HTTP2_PREFACE)
        return probe.recv(5).startswith(b"HTTP/")
    except OSError:
        return False


def _refuse_in_process(store: Store, where: str) -> None:
    """A file system that lives in this process's memory cannot serve Ray's workers: they
    would write where nobody sees, and the job would still report success."""
    fs = store.fs if isinstance(store, FsspecStore) else None
    protocol = getattr(fs, "protocol", "")
    names = {protocol} if isinstance(protocol, str) else set(protocol)
    names.add(getattr(getattr(fs, "fs", None), "type_name", ""))  # pyarrow's, wrapped
    if found := sorted(names & _IN_PROCESS):
        raise ConfigError(
            f"The {where} {'are' if where.endswith('s') else 'is'} on {found[0]}://, a file "
            "system in this one process's memory: "
            "the Ray engine's workers, in processes of their own, cannot reach it.",
            hint="Use a folder every node can reach or an object store (s3://, gs://), or "
            "protect them with the local engine (without --engine ray).",
        )


def local_instance_options(options: RayOptions) -> dict[str, Any]:
    """``ray.init`` arguments for a Ray instance started on this machine for one job: the CPUs
    and GPUs asked for, and nothing the job does not use, so that Ray's own processes leave the
    CPUs to the photos (no dashboard, no metrics collection). Also turns off Ray's usage report
    for this process (spdesk sends nothing anywhere)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "_system_config": {"enable_metrics_collection": False},
    }
    local = {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus}
    kwargs.update({k: v for k, v in local.items() if v is not None})
    return kwargs


def _check_encoder_files_here(spec: str) -> None:
    """Load the encoder files this machine has (on its CPU, then let go), as the local engine
    does before anything is written: a damaged one failed on the actors, after the output
    folder was made. Files only the workers have, and the models spdesk downloads (the workers
    load their own), are left to them."""
    from spdesk.core.encoders import STORE_SPECS, load_encoder, spec_parts

    for part in spec_parts(spec):
        if part not in STORE_SPECS and Path(part).exists():
            load_encoder(part, "cpu")


def _starts_a_local_instance(options: RayOptions) -> bool:
    """Whether the job starts a Ray instance of its own on this machine (see :func:`_session`)."""
    ray = sys.modules.get("ray")
    joined = ray is not None and ray.is_initialized()
    return not (joined or options.address is not None or os.environ.get("RAY_ADDRESS"))


def _refuse_cpus_this_machine_lacks(num_cpus: int | None) -> None:
    """Ray believes the CPU count it is given too: an instance started with more than this
    machine has ran that many workers on its cores (6 photo-mode workers of ~0.5 GB each on 2
    cores, 3.4 times slower than 2)."""
    have = os.cpu_count() or 1
    if num_cpus is not None and num_cpus > have:
        raise ConfigError(
            f"--num-cpus {num_cpus}: this computer has {have} CPU(s) for the Ray instance spdesk "
            "starts on it.",
            hint=f"Use --num-cpus {have} or fewer (or leave it out: all of them), or join a "
            "cluster with --address.",
        )


def _refuse_gpus_this_machine_lacks(num_gpus: int | None) -> None:
    """Ray believes the GPU count it is given: an instance started with more than this machine
    has put actors on GPUs that are not there, and they failed after the output folder was made
    ("No CUDA GPU is available... Choose device 'auto'", when it was 'auto')."""
    if not num_gpus:
        return
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if num_gpus > have:
        raise ConfigError(
            f"--num-gpus {num_gpus}: this computer has {have} CUDA GPU(s) for the Ray instance "
            "spdesk starts on it.",
            hint=f"Use --num-gpus {have} ({'CPU workers' if not have else 'all of them'}), or "
            "join a cluster that has GPUs with --address.",
        )


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


def _engine_error(error: BaseException) -> SpdeskError:
    """A plain error for a failure of Ray itself (or a bug in a worker), logged in full."""
    log.error("the Ray run failed", exc_info=error)
    first = _TERMINAL_CODES.sub("", str(error)).splitlines()[0] if str(error) else ""
    return EngineError(
        f"The Ray run failed: {type(error).__name__}: {first[:300]}",
        hint="Finished photos are kept: run the same command again to finish the rest "
        "(details in the log).",
    )


def _absolute(location: Path | str) -> Path | str:
    """A folder as an absolute path, an object-store URL as it is. Workers of a cluster the job
    joins run in the cluster's working folder, not the user's: a relative path there names
    another folder or none ("Could not write ../out/...", or outputs in the wrong place)."""
    if isinstance(location, str) and "://" in location and not location.startswith("file://"):
        return location
    return Path(str(location).removeprefix("file://")).expanduser().absolute()


def _with_absolute_paths(settings: ProtectSettings) -> ProtectSettings:
    """``settings`` with the files the workers load (perturbation, generator, encoder) named by
    absolute paths, for the reason :func:`_absolute` gives."""
    from spdesk.core.encoders import absolute_spec

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else path.expanduser().absolute()

    return dataclasses.replace(
        settings,
        perturbation=absolute(settings.perturbation),
        generator=absolute(settings.generator),
        encoder=absolute_spec(settings.encoder) if settings.encoder.strip() else settings.encoder,
    )


def _shard_name(keys: Sequence[str]) -> str:
    """The same name for the same batch, so a retried batch finds what its last try did. (A
    file name that is not UTF-8 is in its key as \\udcxx escapes: hashed as its own bytes.)"""
    joined = "\n".join(sorted(keys))
    return hashlib.sha256(joined.encode("utf-8", "surrogateescape")).hexdigest()[:24]


class _OnActors(Protector):
    """The driver's stand-in protector: photos are protected by the actors' own."""

    mode = "ray"

    @classmethod
    def build(cls, settings: ProtectSettings, perturbation: Perturbation) -> Protector:
        return cls()

    def protect(self, image: Image.Image, key: str) -> Protected:
        raise RuntimeError("photos of a Ray job are protected on its actors")


class _ShardRun(JobRun):
    """The local engine's run over photos the driver planned: names and collisions come from
    the driver (in job order); the shard says what an earlier try of this batch finished."""

    def __init__(
        self,
        job: ProtectJob,
        protector: Protector,
        fingerprint: str,
        tasks: dict[str, _Task],
        cancel: CancelToken | None = None,
    ) -> None:
        report = JobReport(job.output_root)
        cancel = cancel or CancelToken()
        super().__init__(job, protector, fingerprint, ignore_events, cancel, report)
        self.tasks = tasks
        self.names.written.update(task.target.path for task in tasks.values())  # the batch's

    def _take_proof(self, manifest: Manifest, planned: list[_Planned]) -> None:
        """Nothing to take: the driver planned every name with the folder's manifest, and a
        shard holds only this batch's lines (as proof, it would refuse every "overwrite")."""

    def _prepare(self, manifest: Manifest, item: _Planned) -> _Task | None:
        task = self.tasks[item.key]
        finished = manifest.finished_output(item.key, self.fingerprint, task.signature)
        if finished is None:
            return dataclasses.replace(task, started=time.monotonic())
        # Ray retried this batch after its worker died: the first try protected this photo,
        # in this job (the driver plans only photos not finished before it), so it is done.
        facts = manifest.entries.get(item.key, {}).get(_DONE_FACTS)
        if isinstance(facts, dict):
            self._done_before(item, finished, facts)
        else:  # a line from before the facts were kept
            reason = "already protected with the same settings"
            self._skip(item, SkipReason.ALREADY_DONE, reason, finished)
        return None

    def _done_line_extras(self, outcome: Any) -> dict[str, Any]:
        psnr, peak = outcome.figures
        facts = {"psnr": psnr, "max_change": peak, "notes": list(outcome.notes)}
        return {_DONE_FACTS: {**facts, "location_removed": outcome.location_removed}}

    def _done_before(self, item: _Planned, output: Path, facts: dict[str, Any]) -> None:
        """Report again, as done, a photo the batch's first try protected (its row was lost
        with the worker)."""
        self.handled.add(item.key)
        event = FileDone(
            item.source,
            output,
            psnr=facts.get("psnr"),
            max_change=int(facts.get("max_change", 0)),
            notes=tuple(facts.get("notes", ())),
            position=item.position,
            count=item.count,
            location_removed=bool(facts.get("location_removed", False)),
        )
        self.report.done.append(event)
        self.emit(event)


# A shard's "done" line keeps what its photo's row said, for a retry of the batch to say again.
_DONE_FACTS = "done_facts"


class StopSign:
    """The driver's stop (a cancel, a full disk), which the workers read between photos
    (:class:`_SignWatch`); made before they start, raised by a watcher thread of the driver's
    as soon as the job stops (:func:`_stop_sign_when`)."""

    def __init__(self) -> None:
        self.up = False

    def raise_sign(self) -> None:
        self.up = True

    def is_up(self) -> bool:
        return self.up


@contextlib.contextmanager
def _stop_sign_when(sign: Any, stopping: Callable[[], bool]) -> Iterator[None]:
    """Raise ``sign`` as soon as ``stopping()`` says so, while the driver waits for batches (a
    batch of 64 photos may take long to come back)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if not stopping():
                continue
            try:
                sign.raise_sign.remote()
            except Exception:  # the workers then finish their batches: still all recorded
                log.warning("could not stop the Ray workers between photos", exc_info=True)
            return

    watcher = threading.Thread(target=watch, name="spdesk-ray-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


class _SignWatch(CancelToken):
    """A cancel token that also reads the driver's :class:`StopSign`, at most every
    ``every`` seconds (a call to another process). A sign that cannot be read because the
    driver is gone stops the work too: nobody would record it."""

    def __init__(self, sign: Any, every: float = 0.2) -> None:
        super().__init__()
        self.sign = sign
        self.every = every
        self._next_look = 0.0

    @property
    def cancelled(self) -> bool:
        self._look()
        return super().cancelled

    def check(self) -> None:
        self._look()
        super().check()

    def _look(self) -> None:
        now = time.monotonic()
        if self.sign is None or self._cancelled or now < self._next_look:
            return
        self._next_look = now + self.every
        import ray

        try:
            up = ray.get(self.sign.is_up.remote(), timeout=10)
        except ray.exceptions.GetTimeoutError:
            return  # a busy cluster: look again later
        except ray.exceptions.RayError:
            up = True  # the driver, which owns the sign, is gone
        if up:
            self.cancel()


class _Protector:
    """One Ray actor: builds the mode's protector (its models) once, then protects batches."""

    def __init__(
        self,
        output_root: Path,
        settings: ProtectSettings,
        perturbation: Perturbation,
        fingerprint: str,
        key: str = "",
        inputs: Store | None = None,
        outputs: Store | None = None,
        stop: Any = None,
    ) -> None:
        if key:
            os.environ[ENV_KEY] = key
        self.stop = stop  # the driver's StopSign (an actor handle)
        self.job = ProtectJob([], output_root, settings)
        self.job.store = inputs or FolderStore()
        self.job.output_store = outputs or FolderStore()
        self.fingerprint = fingerprint
        self.protector: Protector | None = None
        self.error: SpdeskError | None = None
        self.clock = BusyClock()
        try:  # the mode's per-photo step, models and all: once per actor
            self.protector = TimedProtector(build_protector(settings, perturbation), self.clock)
        except SpdeskError as error:  # reported with the first batch, back to the driver
            self.error = error

    def batch(self, encoded: Sequence[str]) -> _Batch:
        """:meth:`rows`, with this worker's reading of its time computing and alive."""
        with self.clock.batch():
            rows = self.rows(encoded)
        return rows, self.clock.reading()

    def rows(self, encoded: Sequence[str]) -> list[_Row]:
        """Protect one batch of planned photos (:func:`encode_task`'s lines), recorded in its
        own manifest shard; returns each photo's outcome (:data:`_Row`) in job order."""
        # A named error goes back as a row: raised here, Ray Data would hand the driver its own
        # wrapper, without the error or its words ("RayTaskError(UserCodeException) ...").
        if self.protector is None:
            assert self.error is not None
            return [_fatal_row(self.error)]
        tasks = {task.item.key: task for task in map(decode_task, encoded)}
        run = _ShardRun(self.job, self.protector, self.fingerprint, tasks, _SignWatch(self.stop))
        place = self.job.output_store
        try:
            with place.manifest(self.job.output_root, shard=_shard_name(list(tasks))) as shard:
                run.process_planned(shard, [task.item for task in tasks.values()])
        except SpdeskError as error:  # the batch's shard cannot be written, say
            if isinstance(error, errors.Cancelled):
                raise
            return [_fatal_row(error)]
        report = run.report
        events: list[FileDone | FileSkipped | FileFailed] = sorted(
            [*report.done, *report.skipped, *report.failed], key=_position
        )
        return [(encode_event(e), report.stopped or "", "null") for e in events]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch of Ray Data's ``map_batches`` (the actors' face of :meth:`batch`): each
        photo's outcome, and on every row the actor's reading (a block may hold several)."""
        rows, (worker, busy, alive) = self.batch([str(task) for task in batch["task"]])
        columns = {
            name: np.array([row[column] for row in rows], dtype=str)
            for column, name in enumerate(("event", "stopped", "fatal"))
        }
        count = len(rows)
        clock = {"worker": np.full(count, worker), "busy": np.full(count, busy)}
        return {**columns, **clock, "alive": np.full(count, alive)}


# The protector of the job a worker process last served: built by its first task of that job.
_task_protector: dict[str, _Protector] = {}


def _protect_in_task(tasks: list[str], job: str, protector: dict[str, Any]) -> _Batch:
    """One batch as a plain Ray task (universal mode): the worker process builds the job's
    protector on its first batch of the job and keeps it for the next ones."""
    if job not in _task_protector:
        _task_protector.clear()  # a process serves one job at a time: keep only the latest
        _task_protector[job] = _Protector(**protector)
    return _task_protector[job].batch(tasks)


def _progress_bar(total: int) -> Any:
    """Ray's own progress bar (``tqdm_ray``) for a job's photos, on the driver's terminal."""
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")  # leave this process's print alone
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(total=total, desc="Protecting", unit="photo")


def _fatal_row(error: SpdeskError) -> _Row:
    """A worker's named error as an outcome row, rebuilt by :func:`_fatal_error`."""
    fatal = {"type": type(error).__name__, "message": error.message, "hint": error.hint or ""}
    return ("", "", json.dumps(fatal))


def _fatal_error(text: str) -> SpdeskError | None:
    """The named error a worker sent back as a row (:func:`_fatal_row`: an actor that could not
    start, a batch whose shard could not be written), rebuilt here."""
    fatal = json.loads(text)
    if fatal is None:
        return None
    cls = getattr(errors, fatal["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, SpdeskError)) or cls is errors.Cancelled:
        cls = EngineError
    return cls(fatal["message"], hint=fatal["hint"] or None)


def _position(event: FileDone | FileSkipped | FileFailed) -> int:
    return event.position


_OUTCOMES: dict[str, type[FileDone | FileSkipped | FileFailed]] = {
    "done": FileDone,
    "skipped": FileSkipped,
    "failed": FileFailed,
}


def encode_event(event: FileDone | FileSkipped | FileFailed) -> str:
    """A photo's outcome as one JSON line (what workers send back; no pickles)."""
    name = next(k for k, cls in _OUTCOMES.items() if isinstance(event, cls))
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "time"}
    return json.dumps({"event": name, **fields}, default=str)


def encode_task(task: _Task) -> str:
    """A planned photo as one JSON line (what the driver sends to the workers; no pickles)."""
    item = task.item
    return json.dumps(
        {
            "source": str(item.photo.path),
            "root": str(item.photo.root),
            "relative": str(item.relative),
            "key": item.key,
            "position": item.position,
            "count": item.count,
            "target": [str(task.target.path), task.target.replace, list(task.target.notes)],
            "existing": task.target.existing,  # a taken name: never published as idempotent
            "maybe_ours": str(task.target.maybe_ours or ""),
            "format": task.target.format,  # decided with the name (a HEIC with alpha: PNG)
            "signature": task.signature.as_list(),
            # the photo's copy from an earlier run, kept: its new copy's note names it
            "earlier": [str(task.target.earlier[0]), task.target.earlier[1]]
            if task.target.earlier
            else None,
        }
    )  # ASCII: names that are not UTF-8 travel as \udcxx escapes


def decode_task(text: str) -> _Task:
    """The task :func:`encode_task` wrote (``started`` is set when the photo is prepared)."""
    data = json.loads(text)
    photo = InputPhoto(Path(data["source"]), Path(data["root"]))
    item = _Planned(photo, Path(data["relative"]), data["key"], data["position"], data["count"])
    path, replace, notes = data["target"]
    existing = bool(data.get("existing", False))
    maybe_ours = Path(data["maybe_ours"]) if data.get("maybe_ours") else None
    target = Target(
        Path(path),
        replace=replace,
        notes=tuple(notes),
        existing=existing,
        owner=item.key,
        maybe_ours=maybe_ours,
        format=str(data.get("format", "")),
        earlier=(Path(data["earlier"][0]), data["earlier"][1]) if data.get("earlier") else None,
    )
    return _Task(item, target, SourceSignature(*data["signature"]), started=0.0)


def decode_event(text: str) -> FileDone | FileSkipped | FileFailed:
    """The event :func:`encode_event` wrote."""
    data = json.loads(text)
    cls = _OUTCOMES[data.pop("event")]
    data["source"] = Path(data["source"])
    if cls is FileSkipped:
        data["kind"] = SkipReason(data["kind"])
    elif cls is FileFailed:
        data["kind"] = FailReason(data["kind"])
    if data.get("output") is not None:
        data["output"] = Path(data["output"])
    if "notes" in data:
        data["notes"] = tuple(data["notes"])
    return cls(**data)


__all__ = [
    "Placement",
    "RayOptions",
    "RayProtectJob",
    "RayStats",
    "decode_event",
    "decode_task",
    "encode_event",
    "encode_task",
    "import_ray",
    "local_instance_options",
    "plan_placement",
    "protect_on_ray",
]
