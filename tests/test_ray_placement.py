"""Where a Ray job's actors run: GPU actors for the modes that run a network, asked for or by
default where the cluster has GPUs; CPU actors otherwise. Decided on the driver from the
cluster's resources, so it is tested here without Ray, CUDA or a GPU; so are the driver's other
checks before Ray runs anything (the cluster's address, file systems the workers cannot reach)."""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from spdesk.cli import build_parser
from spdesk.cli.protect import job_from_args
from spdesk.core.distributed import ray_engine
from spdesk.core.distributed.ray_engine import RayOptions, RayProtectJob, plan_placement
from spdesk.core.errors import ConfigError, EngineError
from spdesk.core.jobs import ProtectSettings
from spdesk.core.jobs.fingerprint import output_fingerprint
from spdesk.core.perturbation import load_perturbation
from tests import protect_samples as samples

GPU_NODE = {"CPU": 16.0, "GPU": 4.0}
CPU_NODE = {"CPU": 8.0}


@pytest.mark.parametrize("mode", ["photo", "finetune"])
def test_network_modes_run_on_as_many_gpu_actors_as_asked(mode: str) -> None:
    placement = plan_placement(ProtectSettings(mode=mode), RayOptions(num_gpus=2), GPU_NODE)
    assert (placement.kind, placement.workers, placement.device) == ("GPU", 2, "cuda")
    assert placement.resources == {"num_cpus": 1, "num_gpus": 1}


def test_by_default_every_gpu_of_the_cluster_and_none_on_a_cpu_cluster() -> None:
    photo = ProtectSettings(mode="photo")
    assert plan_placement(photo, RayOptions(), GPU_NODE).workers == 4
    on_cpus = plan_placement(photo, RayOptions(num_cpus=3), CPU_NODE)
    assert (on_cpus.kind, on_cpus.workers, on_cpus.device) == ("CPU", 3, "cpu")
    assert on_cpus.resources == {"num_cpus": 1}


@pytest.mark.parametrize(
    ("settings", "device"),
    [
        (ProtectSettings(mode="universal"), "auto"),  # no network: GPUs would not help
        (ProtectSettings(mode="photo", device="cpu"), "cpu"),  # asked for the CPU
    ],
)
def test_cpu_actors_when_nothing_runs_on_a_gpu(settings: ProtectSettings, device: str) -> None:
    placement = plan_placement(settings, RayOptions(), GPU_NODE)
    assert (placement.kind, placement.workers, placement.device) == ("CPU", 16, device)
    assert "num_gpus" not in placement.resources
    assert plan_placement(settings, RayOptions(num_gpus=0), GPU_NODE).kind == "CPU"


@pytest.mark.parametrize(("mode", "actors"), [("universal", False), ("photo", True)])
def test_universal_mode_runs_as_plain_tasks_and_network_modes_on_actors(
    mode: str, actors: bool
) -> None:
    """Universal mode loads nothing worth an actor: tasks reuse the cluster's warm workers."""
    assert plan_placement(ProtectSettings(mode=mode), RayOptions(), CPU_NODE).actors is actors
    assert plan_placement(ProtectSettings(mode="photo"), RayOptions(), GPU_NODE).actors


def test_a_worker_process_builds_a_jobs_protector_once_and_forgets_the_last_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    class Counting:
        def __init__(self, **protector: Any) -> None:
            built.append(protector["fingerprint"])
            self.fingerprint = protector["fingerprint"]

        def batch(self, tasks: list[str]) -> list[tuple[str, ...]]:
            return [(self.fingerprint, task) for task in tasks]

    monkeypatch.setattr(ray_engine, "_Protector", Counting)
    monkeypatch.setattr(ray_engine, "_task_protector", {})
    for job, fingerprint in [("job1", "a"), ("job1", "a"), ("job2", "b"), ("job2", "b")]:
        out = ray_engine._protect_in_task(["t"], job, {"fingerprint": fingerprint})
        assert out == [(fingerprint, "t")]
    assert built == ["a", "b"]
    assert list(ray_engine._task_protector) == ["job2"]


def test_num_gpus_zero_runs_the_generator_on_cpu_actors_of_a_gpu_cluster() -> None:
    placement = plan_placement(ProtectSettings(mode="photo"), RayOptions(num_gpus=0), GPU_NODE)
    assert (placement.kind, placement.device) == ("CPU", "cpu")


def test_more_gpus_than_the_cluster_has_or_cuda_without_gpus_are_plain_errors() -> None:
    with pytest.raises(ConfigError, match=r"--num-gpus 2: the Ray cluster has 0 GPU"):
        plan_placement(ProtectSettings(mode="photo"), RayOptions(num_gpus=2), CPU_NODE)
    with pytest.raises(ConfigError, match=r"--device cuda needs GPU workers"):
        plan_placement(ProtectSettings(mode="photo", device="cuda"), RayOptions(), CPU_NODE)


class _FakeRay:
    """What the engine asks of the ``ray`` module before it runs anything: the cluster's
    resources and Ray Data's actor pool."""

    def __init__(self, cluster: dict[str, float]) -> None:
        self.cluster = cluster
        self.data = SimpleNamespace(ActorPoolStrategy=lambda size: ("actors", size))

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return self.cluster


def test_the_job_asks_ray_data_for_gpu_actors_and_fingerprints_the_gpus_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a driver without CUDA: the job's actors hold a GPU each and protect on "cuda", and
    the manifest's fingerprint is the GPU's, not the driver's CPU's (their bytes differ)."""
    fake = _FakeRay(GPU_NODE)
    monkeypatch.setattr(ray_engine, "import_ray", lambda data=False: fake)
    perturbation = load_perturbation(samples.perturbation_file(tmp_path))
    settings = ProtectSettings(mode="photo")
    # A cluster joined (a local instance would be refused GPUs this driver lacks).
    options = RayOptions(num_gpus=3, address="auto")
    job = RayProtectJob([], tmp_path / "out", settings, options)
    job._protector(perturbation)
    resources: dict[str, Any] = job._resources(fake, blocks=10)
    assert resources == {"compute": ("actors", 3), "num_cpus": 1, "num_gpus": 1}
    assert job.settings.device == "cuda" and job.stats.worker_kind == "GPU"
    cpu = ProtectSettings(mode="photo", device="cpu")
    assert output_fingerprint(job.settings, "p") != output_fingerprint(cpu, "p")
    assert job._resources(fake, blocks=2)["compute"] == ("actors", 2)  # no idle actors


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stderr", "json", "bars"),
    [(_Terminal, False, True), (io.StringIO, False, False), (_Terminal, True, False)],
)
def test_the_command_shows_rays_progress_bars_on_a_terminal_only(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stderr: type[io.StringIO],
    json: bool,
    bars: bool,
) -> None:
    """On a pipe or in a log, Ray's bars would leave every redraw behind (the last one twice on
    one line) beside the photos' own lines; --json keeps stderr for problems."""
    monkeypatch.setattr(sys, "stderr", stderr())
    argv = ["protect", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray"]
    args = build_parser().parse_args([*argv, *(["--json"] if json else [])])
    job = job_from_args(args, ProtectSettings())
    assert job.options.progress is bars


@pytest.mark.parametrize(("given", "threads"), [([], 2), (["--workers", "3"], 3)])
def test_workers_on_the_command_line_are_the_photos_in_flight_in_each_ray_worker(
    tmp_path: Path, given: list[str], threads: int
) -> None:
    """``--workers 3 --engine ray`` was ignored: every worker ran 2 photos at once."""
    argv = ["protect", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray"]
    job = job_from_args(build_parser().parse_args([*argv, *given]), ProtectSettings())
    assert job.options.threads == threads
    assert job.settings.workers == threads


def test_rays_note_on_token_authentication_goes_to_the_log_not_the_terminal(
    tmp_path: Path,
) -> None:
    """Ray 2.5x turns on token authentication for the local instance it starts and says so on
    the terminal ("Set RAY_AUTH_MODE=disabled to opt out"), between spdesk's own lines."""
    import logging

    name = "ray._private.authentication.authentication_token_setup"
    terminal, log_file = io.StringIO(), io.StringIO()
    ray_console = logging.StreamHandler(terminal)
    spdesk_log = logging.StreamHandler(log_file)
    logging.getLogger("ray").addHandler(ray_console)
    logging.getLogger("spdesk").addHandler(spdesk_log)
    note = logging.getLogger(name)
    saved = (note.propagate, list(note.handlers))

    def init(**_kwargs: Any) -> None:  # what Ray's own ray.init logs for a new instance
        logging.getLogger(name).warning("Token authentication is enabled for this Ray cluster.")

    fake_ray = SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    try:
        with ray_engine._session(fake_ray, RayOptions(num_cpus=1)):
            pass
        assert "Token authentication" not in terminal.getvalue()
        assert "Token authentication" in log_file.getvalue()
    finally:
        logging.getLogger("ray").removeHandler(ray_console)
        logging.getLogger("spdesk").removeHandler(spdesk_log)
        note.propagate, note.handlers = saved


class _RecordingRay:
    """The ``ray`` module as a job's session sees it, with each ``ray.init`` call's arguments
    recorded (a real Ray would start, join or hang)."""

    def __init__(self) -> None:
        self.inits: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)

    def shutdown(self) -> None:
        pass


def test_without_an_address_the_job_starts_its_own_instance_beside_a_ray_start_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ray.init()`` without an address joins the cluster a ``ray start`` left on this machine
    (/tmp/ray/ray_current_cluster), which refuses the local instance's options; "local" starts
    a new instance whatever runs beside it."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    fake = _RecordingRay()
    with ray_engine._session(fake, RayOptions(num_cpus=2)):
        pass
    (kwargs,) = fake.inits
    assert kwargs["address"] == "local"
    assert kwargs["num_cpus"] == 2 and "_system_config" in kwargs


def test_ray_address_in_the_environment_is_joined_without_the_local_instances_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    fake = _RecordingRay()
    with ray_engine._session(fake, RayOptions(num_cpus=2)):
        pass
    (kwargs,) = fake.inits
    assert "address" not in kwargs and "num_cpus" not in kwargs
    assert "_system_config" not in kwargs


def _closed_port() -> int:
    """A local TCP port nobody listens on (just released by this process)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("scheme", ["", "ray://"], ids=["gcs", "ray-client"])
def test_an_address_nobody_listens_on_is_a_plain_error_within_seconds(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray's own connect retries without end and ignores Ctrl-C and SIGTERM: the job tries the
    address first and stops with the named error instead."""
    import time

    monkeypatch.setitem(sys.modules, "grpc", ModuleType("grpc"))  # Ray Client's: installed
    options = RayOptions(address=f"{scheme}127.0.0.1:{_closed_port()}")
    fake = _RecordingRay()
    started = time.monotonic()
    unreachable = r"Could not reach the Ray cluster at .*127\.0\.0\.1"
    with pytest.raises(EngineError, match=unreachable), ray_engine._session(fake, options):
        pass
    assert time.monotonic() - started < 10
    assert not fake.inits, "Ray was asked to connect anyway"


@contextlib.contextmanager
def _server(answer: bytes) -> Iterator[int]:
    """A one-connection TCP server on 127.0.0.1 that reads what it is sent and answers
    ``answer``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.recv(64)
                connection.sendall(answer)
                connection.recv(64)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(5)


def test_an_address_where_a_web_server_answers_is_refused_not_joined_for_ever() -> None:
    """The dashboard's port (8265) took TCP, then Ray retried there for ever, deaf to Ctrl-C."""
    fake = _RecordingRay()
    with _server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        options = RayOptions(address=f"127.0.0.1:{port}")
        with (
            pytest.raises(EngineError, match="speaks plain HTTP") as raised,
            ray_engine._session(fake, options),
        ):
            pass
    assert "HOST:6379" in (raised.value.hint or "") and not fake.inits
    web = RayOptions(address="http://127.0.0.1:8265")
    with pytest.raises(EngineError, match="is a web address"), ray_engine._session(fake, web):
        pass
    assert not fake.inits


def test_an_address_that_answers_in_http2_is_joined() -> None:
    """Ray's GCS and Ray Client speak gRPC: they answer the probe with an HTTP/2 frame."""
    fake = _RecordingRay()
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with (
        _server(settings_frame) as port,
        ray_engine._session(fake, RayOptions(address=f"127.0.0.1:{port}")),
    ):
        pass
    assert [init["address"] for init in fake.inits] == [f"127.0.0.1:{port}"]


def test_ray_client_without_its_grpc_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` now raises ImportError
    fake = _RecordingRay()
    options = RayOptions(address="ray://127.0.0.1:10001")
    with (
        pytest.raises(EngineError, match=r"Ray Client") as raised,
        ray_engine._session(fake, options),
    ):
        pass
    assert 'pip install "ray[client]"' in (raised.value.hint or "")
    assert not fake.inits


@pytest.mark.parametrize("where", ["inputs", "output"])
def test_a_file_system_in_this_process_memory_is_refused_for_ray(
    tmp_path: Path, where: str
) -> None:
    """memory:// lives in one process: Ray's workers would write where the caller never sees,
    and the job would report success."""
    import fsspec

    folder = tmp_path / "in"
    photo = samples.photo(folder / "a.png")
    memory = f"memory://{tmp_path.name}"
    fsspec.filesystem("memory").pipe(f"{memory}/in/a.png", photo.read_bytes())
    inputs: list[Path | str] = [f"{memory}/in"] if where == "inputs" else [folder]
    output = tmp_path / "out" if where == "inputs" else f"{memory}/out"
    with pytest.raises(ConfigError, match=r"memory://.*one process") as raised:
        RayProtectJob(inputs, output, ProtectSettings(mode="universal"), RayOptions())
    assert "local engine" in (raised.value.hint or "")
    said = "The inputs are on" if where == "inputs" else "The output is on"
    assert raised.value.message.startswith(said)
    assert not (tmp_path / "out").exists()


def test_the_commands_sigterm_handler_is_back_once_ray_has_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ray.init`` installs a SIGTERM handler that exits at once: `kill` then ended a Ray job
    with no summary, where the local engine stops after the current step (as Ctrl+C)."""
    import signal

    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class RayTakingSigterm(_RecordingRay):
        def init(self, **kwargs: Any) -> None:
            super().init(**kwargs)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(15))

    def commands_own(_signum: int, _frame: object) -> None:
        return None

    before = signal.signal(signal.SIGTERM, commands_own)
    try:
        with ray_engine._session(RayTakingSigterm(), RayOptions(num_cpus=2)):
            assert signal.getsignal(signal.SIGTERM) is commands_own
    finally:
        signal.signal(signal.SIGTERM, before)


def _fake_ray_private(monkeypatch: pytest.MonkeyPatch, **utils: Any) -> SimpleNamespace:
    """``ray._private`` as far as the daemons' starter goes: a ConsolePopen recording how it
    was called, and ``utils`` as given."""
    made: list[dict[str, Any]] = []

    class ConsolePopen:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)

    services = SimpleNamespace(ConsolePopen=ConsolePopen, made=made)
    private = ModuleType("ray._private")
    private.services = services  # type: ignore[attr-defined]
    private.utils = SimpleNamespace(**utils)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", ModuleType("ray"))
    monkeypatch.setitem(sys.modules, "ray._private", private)
    monkeypatch.setattr(sys, "platform", "linux")
    return services


@pytest.mark.parametrize("ray_passes_it", [False, True])
def test_rays_daemons_start_in_a_session_of_their_own_and_the_starter_is_put_back(
    monkeypatch: pytest.MonkeyPatch, ray_passes_it: bool
) -> None:
    """Whether or not Ray gives start_new_session itself (a duplicate keyword was a TypeError),
    and the starter is Ray's own again afterwards, even when ray.init fails."""
    services = _fake_ray_private(monkeypatch, detect_fate_sharing_support=lambda: True)
    original = services.ConsolePopen
    given = {"start_new_session": False} if ray_passes_it else {}
    with pytest.raises(RuntimeError), ray_engine._daemons_in_a_session_of_their_own(True):
        services.ConsolePopen(["gcs_server"], **given)
        raise RuntimeError("ray.init failed")
    assert services.made == [{"start_new_session": True}]
    assert services.ConsolePopen is original


def test_a_ray_without_the_fate_sharing_check_starts_its_daemons_as_it_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray's private API may change: without it, nothing is patched (no AttributeError)."""
    services = _fake_ray_private(monkeypatch)
    original = services.ConsolePopen
    with ray_engine._daemons_in_a_session_of_their_own(True):
        assert services.ConsolePopen is original


def test_more_cpus_than_this_machine_has_are_refused_for_the_local_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray believed --num-cpus 8 on a 2-core machine: 6 photo-mode workers of ~0.5 GB each ran
    on 2 cores, 3.4 times slower than 2."""
    import os

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    samples.photo(tmp_path / "in" / "a.png")
    have = os.cpu_count() or 1
    universal = ProtectSettings(mode="universal")
    refused = rf"--num-cpus {have + 1}: this computer has {have} CPU"
    with pytest.raises(ConfigError, match=refused):
        RayProtectJob([tmp_path / "in"], tmp_path / "out", universal, RayOptions(num_cpus=have + 1))
    assert not (tmp_path / "out").exists()
    # as many as it has: accepted (nothing starts before run())
    RayProtectJob([tmp_path / "in"], tmp_path / "out", universal, RayOptions(num_cpus=have))
