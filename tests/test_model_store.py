"""The model store against a local stand-in for the Hugging Face hub (tests/hub_server.py).

Tiny random-weight SD 1.5 components are served in the real repository layout (fp16 variants,
safety checker, .bin and single-file checkpoints included), so every path of a real download runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_server import (
    NEVER_FETCHED,
    HubServer,
    tiny_sd_repo_files,
    tiny_taesd_repo_files,
    without_safetensors,
)

from spdesk.core.encoders import load_encoder
from spdesk.core.errors import (
    Cancelled,
    ConfigError,
    DiskFullError,
    DownloadError,
    ModelError,
    ModelMissingError,
    NotEnoughSpaceError,
    OutputError,
    ReadOnlyDiskError,
)
from spdesk.core.events import CancelToken, Event
from spdesk.core.models import download as downloadmod
from spdesk.core.models import events as hubmod
from spdesk.core.models import selection, sources
from spdesk.core.models import settings as settings_module
from spdesk.core.models import store as store_module
from spdesk.core.models.settings import StoreSettings, load_settings, save_settings
from spdesk.core.models.store import ModelStore, encoder_folder, installed_encoders

SD = sources.SD15_REPO
REV = sources.SD15_REVISION
VAE_FILES = {"vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"}
PREVIEW_FILES = VAE_FILES | {
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.fp16.safetensors",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer/tokenizer_config.json",
    "scheduler/scheduler_config.json",
}
UNET = "unet/diffusion_pytorch_model.fp16.safetensors"
CHUNK = 16 * 1024  # read size in tests that need several chunks per tiny file


@pytest.fixture(scope="module")
def sd_files() -> dict[str, bytes]:
    return tiny_sd_repo_files()


@pytest.fixture
def hub(sd_files: dict[str, bytes]) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_repo(SD, REV, sd_files)
        yield server


@pytest.fixture
def store(hub: HubServer) -> ModelStore:
    return ModelStore(settings=StoreSettings(endpoint=hub.url))


def of_type(events: list[Event], cls: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def size_of(files: dict[str, bytes], names: set[str]) -> int:
    return sum(len(files[n]) for n in names)


def test_train_fetches_only_the_fp16_vae_with_exact_progress(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes]
) -> None:
    events: list[Event] = []
    folder = store.download("train", on_event=events.append)

    total = size_of(sd_files, VAE_FILES)
    [planned] = of_type(events, hubmod.DownloadPlanned)
    assert (planned.files, planned.total_bytes, planned.to_fetch_bytes) == (2, total, total)
    assert planned.free_bytes > 0
    progress = of_type(events, hubmod.DownloadProgress)
    assert progress[-1].done == progress[-1].total == total
    assert all(p.file_done <= p.file_total for p in progress)
    assert progress[-1].speed_bps > 0 and progress[-1].eta_s == 0
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert {v.file for v in of_type(events, hubmod.FileVerified)} == VAE_FILES
    assert {v.file for v in of_type(events, hubmod.FileVerifying)} == VAE_FILES
    [finished] = of_type(events, hubmod.DownloadFinished)
    assert finished.fetched_bytes == total
    assert set(hub.served) == VAE_FILES
    assert hub.bytes_served() == total
    # Stored under the plain name, byte-identical to the hub's fp16 file.
    stored = folder / "vae" / "diffusion_pytorch_model.safetensors"
    assert stored.read_bytes() == sd_files["vae/diffusion_pytorch_model.fp16.safetensors"]
    assert store.require("train") == folder
    status = {s.feature: s for s in store.status()}
    assert status["train"].present and status["train"].verified
    assert status["train"].origin == "downloaded" and status["train"].size_bytes == total
    assert not status["preview"].present


def test_preview_after_train_fetches_only_the_rest_and_never_unwanted_files(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes]
) -> None:
    store.download("train")
    hub.served.clear()
    events: list[Event] = []
    store.download("preview", on_event=events.append)

    [planned] = of_type(events, hubmod.DownloadPlanned)
    assert planned.total_bytes == size_of(sd_files, PREVIEW_FILES)
    assert planned.to_fetch_bytes == size_of(sd_files, PREVIEW_FILES - VAE_FILES)
    assert set(hub.served) == PREVIEW_FILES - VAE_FILES
    requested = {path for method, path in hub.requests if method == "GET"}
    for never in [*NEVER_FETCHED, "vae/diffusion_pytorch_model.safetensors"]:
        assert not any(r.endswith("/" + never) for r in requested), never
    assert store.find("train") is not None and store.find("preview") is not None
    assert store.verify("preview").ok


def test_cancel_half_way_keeps_partial_data_and_resume_fetches_only_the_rest(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloadmod, "CHUNK_BYTES", CHUNK)
    cancel = CancelToken()

    def cancel_half_way(event: Event) -> None:
        if isinstance(event, hubmod.DownloadProgress) and event.done > event.total / 2:
            cancel.cancel()

    with pytest.raises(Cancelled, match="kept, the next download resumes"):
        store.download("preview", on_event=cancel_half_way, cancel=cancel)
    hub.wait_idle()
    first_run = hub.bytes_served()
    plan = store.plan("preview")
    assert 0 < plan.done_bytes < plan.total_bytes
    assert plan.done_bytes <= first_run  # what stayed on disk came over the network once
    status = {s.feature: s for s in store.status()}
    assert not status["preview"].present and status["preview"].partial_bytes > 0
    assert store.folder_for("preview").joinpath(UNET.replace(".fp16", "") + ".part").is_file()

    hub.served.clear()
    events: list[Event] = []
    store.download("preview", on_event=events.append)
    assert hub.bytes_served() == plan.to_fetch_bytes  # only the rest crossed the network
    [started] = of_type(events, hubmod.DownloadStarted)
    assert started.done_bytes == plan.done_bytes
    assert of_type(events, hubmod.DownloadProgress)[-1].done == plan.total_bytes
    assert store.verify("preview").ok


def test_a_preview_download_stopped_once_the_vae_is_in_leaves_training_installed(
    store: ModelStore, hub: HubServer
) -> None:
    """Every file training needs had arrived and been verified, but a preview download that
    stopped (cancelled, the network gone) recorded no feature: training was "not installed"."""
    cancel = CancelToken()
    verified: set[str] = set()

    def cancel_once_the_vae_is_in(event: Event) -> None:
        if isinstance(event, hubmod.FileVerified):
            verified.add(event.file)
        if verified >= VAE_FILES and len(verified) < len(PREVIEW_FILES):
            cancel.cancel()

    with pytest.raises(Cancelled):
        store.download("preview", on_event=cancel_once_the_vae_is_in, cancel=cancel)
    assert store.find("preview") is None
    status = {s.feature: s for s in store.status()}
    assert status["train"].present and status["train"].verified, status["train"]
    assert store.require("train") == store.folder_for("preview")
    assert store.verify("train").ok
    hub.served.clear()
    store.download("preview")  # the rest, the VAE not fetched again
    assert not VAE_FILES & set(hub.served)
    assert store.verify("preview").ok and store.verify("train").ok


def test_a_preview_download_killed_once_the_vae_is_in_leaves_training_installed(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download killed hard (kill -9, the power gone) runs no handler: its features must be
    on disk as their files arrive. Training stayed "not installed" with its files all there."""
    import signal
    import subprocess
    import sys

    hub.trickle(UNET, piece=4096, pause_s=0.2)  # fetched after the VAE, over some 25 s
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    command = [sys.executable, "-m", "spdesk", "models", "download", "--for", "preview"]
    unet_part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")

    def unet_half_way() -> bool:  # on disk: the hub's first bytes sent may not be written yet
        return unet_part.is_file() and unet_part.stat().st_size > 0

    with subprocess.Popen(command, stderr=subprocess.DEVNULL) as process:
        deadline = time.monotonic() + 120
        while not unet_half_way() and process.poll() is None:
            assert time.monotonic() < deadline, "the UNet never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert store.find("preview") is None
    status = {s.feature: s for s in store.status()}
    assert status["train"].present and status["train"].verified, status["train"]
    assert store.verify("train").ok
    assert unet_half_way()  # the UNet, half-way, counts for nothing
    assert not status["preview"].present and status["preview"].partial_bytes > 0


def test_a_cancel_on_a_slow_connection_stops_at_once_and_keeps_every_byte_received(
    store: ModelStore, hub: HubServer
) -> None:
    # 8 KiB every 0.1 s: the fp16 UNet would take seconds, far less than the MiB the progress
    # batches hold. Reading whole MiB chunks, the cancel waited for the whole file and then
    # threw it away.
    size = len(hub.repos[SD][REV][UNET])
    hub.trickle(UNET, piece=8 * 1024, pause_s=0.1)
    assert size > 40 * 1024
    cancel = CancelToken()
    told: list[int] = []

    def cancel_once_bytes_arrive(event: Event) -> None:
        if isinstance(event, hubmod.DownloadProgress) and event.file == UNET and event.file_done:
            told.append(event.file_done)
            cancel.cancel()

    started = time.monotonic()
    with pytest.raises(Cancelled, match="kept, the next download resumes"):
        store.download("preview", on_event=cancel_once_bytes_arrive, cancel=cancel)
    took = time.monotonic() - started
    part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")
    assert 0 < part.stat().st_size < size
    assert part.stat().st_size == told[-1]  # every byte written was counted, none thrown away
    assert took < size / (8 * 1024) * 0.1 / 2  # well before the whole file would have come


def test_a_cancel_while_the_network_is_silent_mid_file_stops_at_once(
    store: ModelStore, hub: HubServer
) -> None:
    """The read blocked until the next piece came (up to the 30 s read timeout): the first
    Ctrl+C took 22 s on a stalled connection."""
    hub.trickle(UNET, piece=8 * 1024, pause_s=8.0)
    cancel = CancelToken()
    cancelled_at: list[float] = []

    def cancel_once_silent() -> None:
        deadline = time.monotonic() + 30
        while hub.served.get(UNET, 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the first piece is in; the next one is 8 s away
        cancelled_at.append(time.monotonic())
        cancel.cancel()

    threading.Thread(target=cancel_once_silent, daemon=True).start()
    with pytest.raises(Cancelled, match="kept, the next download resumes"):
        store.download("preview", cancel=cancel)
    took = time.monotonic() - cancelled_at[0]
    assert took < 2.0, f"the cancel waited {took:.1f} s for the network"
    part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")
    assert part.stat().st_size == 8 * 1024  # the piece that arrived is kept


@pytest.mark.parametrize("request_held", ["HEAD", "GET"])
def test_a_cancel_while_the_hub_is_slow_to_answer_for_a_file_stops_at_once(
    store: ModelStore, hub: HubServer, request_held: str
) -> None:
    """Asking for a file's details (HEAD) or its bytes (GET) waited for the answer, up to
    30 s, before a Stop or Ctrl+C was looked at (23.5 s measured with the hub 25 s late)."""
    hub.hold(UNET, *((20.0,) if request_held == "HEAD" else (0.0, 20.0)))
    cancel = CancelToken()
    cancelled_at: list[float] = []

    def cancel_once_held() -> None:
        if hub.holding.wait(60):
            time.sleep(0.3)
        cancelled_at.append(time.monotonic())
        cancel.cancel()

    threading.Thread(target=cancel_once_held, daemon=True).start()
    with pytest.raises(Cancelled, match="kept, the next download resumes"):
        store.download("preview", cancel=cancel)
    took = time.monotonic() - cancelled_at[0]
    assert hub.holding.is_set() and took < 3, f"the cancel waited {took:.1f} s for the hub"
    status = {s.feature: s for s in store.status()}
    assert status["train"].present  # what arrived before is kept


def test_a_response_that_comes_after_a_cancel_during_a_slow_get_is_closed(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a cancel while the hub was slow to answer a GET, the response that came later
    was never closed: it held a pooled connection until its stream was collected (here the
    test keeps the stream, as a kept traceback of the cancelled request does)."""
    import huggingface_hub

    responses: list[Any] = []
    streams: list[Any] = []  # kept: the response is closed by spdesk, not by collection
    real_session = huggingface_hub.get_session

    class Told:
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        def __enter__(self) -> Any:
            response = self.stream.__enter__()
            responses.append(response)
            return response

        def __exit__(self, *error: object) -> Any:
            return self.stream.__exit__(*error)

    class Session:
        def stream(self, *args: Any, **kwargs: Any) -> Told:
            streams.append(real_session().stream(*args, **kwargs))
            return Told(streams[-1])

    monkeypatch.setattr(huggingface_hub, "get_session", Session)
    hub.hold(UNET, 0.0, 1.5)  # the HEAD at once, the GET's answer 1.5 s late
    cancel = CancelToken()

    def cancel_once_held() -> None:
        hub.holding.wait(60)
        cancel.cancel()

    threading.Thread(target=cancel_once_held, daemon=True).start()
    with pytest.raises(Cancelled):
        store.download("preview", cancel=cancel)
    held = len(responses)
    deadline = time.monotonic() + 10
    while len(responses) == held and time.monotonic() < deadline:  # the late answer
        time.sleep(0.05)
    late = responses[-1]
    assert len(responses) > held and "unet" in str(late.request.url)
    while not late.is_closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert late.is_closed


def test_status_counts_only_a_features_own_partial_download(
    store: ModelStore, hub: HubServer
) -> None:
    """train's VAE and preview's UNet share one folder: a UNet .part waiting for a resume is
    preview's, not data train (complete) has left half-way."""
    store.download("train")
    hub.trickle(UNET, piece=8 * 1024, pause_s=0.1)
    cancel = CancelToken()

    def cancel_once_unet_bytes_arrive(event: Event) -> None:
        if isinstance(event, hubmod.DownloadProgress) and event.file == UNET and event.file_done:
            cancel.cancel()

    with pytest.raises(Cancelled):
        store.download("preview", on_event=cancel_once_unet_bytes_arrive, cancel=cancel)
    part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")
    status = {s.feature: s for s in store.status()}
    assert status["preview"].partial_bytes >= part.stat().st_size > 0
    assert status["train"].present and status["train"].partial_bytes == 0


def test_status_of_a_stopped_download_counts_what_the_resume_reuses(
    store: ModelStore, hub: HubServer
) -> None:
    """The status said "Partly downloaded (8 kB)" (its .part alone) where the cancel said
    "... kept" and the next download "... already fetched will be reused" of every file
    verified before it; a file deleted from an installed model read as "not installed"."""
    hub.trickle(UNET, piece=8 * 1024, pause_s=0.1)
    cancel = CancelToken()

    def cancel_once_unet_bytes_arrive(event: Event) -> None:
        if isinstance(event, hubmod.DownloadProgress) and event.file == UNET and event.file_done:
            cancel.cancel()

    with pytest.raises(Cancelled) as caught:
        store.download("preview", on_event=cancel_once_unet_bytes_arrive, cancel=cancel)
    hub.wait_idle()
    plan = store.plan("preview")
    status = {s.feature: s for s in store.status()}
    assert status["preview"].partial_bytes == plan.done_bytes > 8 * 1024
    assert f"{selection.human_size(plan.done_bytes)} kept" in str(caught.value)

    hub.faults.trickle.clear()
    folder = store.download("preview")
    (folder / "text_encoder" / "config.json").unlink()
    damaged = store.status_of("preview")
    assert not damaged.present and damaged.partial_bytes == store.plan("preview").done_bytes


def test_a_disk_that_fills_during_a_download_is_a_full_disk_and_keeps_what_arrived(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Free space is checked before the download; another program may fill the disk meanwhile.
    # It was reported as "The connection to ... failed", with advice about the internet.
    write_as_received = downloadmod._write_as_received

    class FillingDisk:
        def __init__(self, out: Any) -> None:
            self.out = out

        def write(self, data: bytes) -> int:
            room = 20_000 - self.out.tell()
            if len(data) > room:  # as a disk does: what fits, then the error
                self.out.write(data[:room])
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.out.write(data))

    def onto_a_filling_disk(chunks: Any, out: Any, on_bytes: Any, cancel: Any) -> None:
        write_as_received(chunks, FillingDisk(out) if out.name.endswith(".part") and
                          "unet" in out.name else out, on_bytes, cancel)  # fmt: skip

    monkeypatch.setattr(downloadmod, "_write_as_received", onto_a_filling_disk)
    with pytest.raises(DiskFullError, match="The disk is full") as info:
        store.download("preview")
    assert "run the download again" in (info.value.hint or "")
    assert "connection" not in info.value.user_text()
    part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")
    assert 0 < part.stat().st_size <= 20_000  # what arrived stays for the next run


def test_a_corrupted_transfer_is_detected_by_sha256_and_fetched_again(
    store: ModelStore, hub: HubServer
) -> None:
    hub.corrupt(UNET, times=1)
    events: list[Event] = []
    store.download("preview", on_event=events.append)
    [rejected] = of_type(events, hubmod.FileRejected)
    assert (rejected.file, rejected.algorithm, rejected.retrying) == (UNET, "sha256", True)
    assert rejected.expected != rejected.actual
    assert store.verify("preview").ok


def test_a_file_corrupted_twice_fails_clearly_and_is_deleted(
    store: ModelStore, hub: HubServer
) -> None:
    hub.corrupt(UNET, times=2)
    with pytest.raises(DownloadError, match="downloaded twice but its sha256 does not match"):
        store.download("preview")
    unet_dir = store.folder_for("preview") / "unet"
    assert not list(unet_dir.glob("*.safetensors*"))
    assert store.find("preview") is None
    store.download("preview")  # the server is healthy again: a plain retry succeeds
    assert store.verify("preview").ok


def test_verify_finds_a_damaged_file_and_the_next_download_refetches_only_it(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes]
) -> None:
    folder = store.download("preview")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))

    result = store.verify("preview")
    assert not result.ok
    assert result.problems == [
        "unet/diffusion_pytorch_model.safetensors does not match its sha256 "
        "(deleted: the next download fetches it)"
    ]
    assert store.find("preview") is None and store.find("train") is not None
    hub.served.clear()
    store.download("preview")
    assert dict(hub.served) == {UNET: len(sd_files[UNET])}
    assert store.verify("preview").ok


@pytest.mark.parametrize("cannot", ["take-the-lock", "delete"])
def test_verify_in_a_store_it_cannot_write_names_the_damage_and_why_nothing_was_deleted(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch, cannot: str
) -> None:
    """A read-only or another user's store: verify stopped at its lock file ("cannot be opened
    for writing", exit 2) and never named the damaged file."""
    import errno

    from spdesk.core.errors import OutputError
    from spdesk.core.models import verify

    folder = store.download("preview")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    if cannot == "take-the-lock":
        lock_refused = OutputError(
            f"The lock file {folder}/.spdesk.lock cannot be opened for writing: it is "
            "read-only, marked immutable, or belongs to another user."
        )

        def no_lock(_folder: Path) -> Any:
            raise lock_refused

        monkeypatch.setattr(verify, "removal_lock", no_lock)
    else:

        def refused(*_args: Any, **_kwargs: Any) -> None:
            raise PermissionError(errno.EACCES, "Permission denied", str(weights))

        monkeypatch.setattr(Path, "unlink", refused)

    result = store.verify("preview")
    assert not result.ok
    assert result.problems[0] == (
        "unet/diffusion_pytorch_model.safetensors does not match its sha256 (not deleted)"
    )
    why = "belongs to another user." if cannot == "take-the-lock" else "Permission denied."
    assert result.problems[1].startswith(f"Nothing could be deleted in {folder}: ")
    assert why in result.problems[1] and "spdesk models remove" in result.problems[1]
    assert weights.read_bytes() == bytes(data)  # left as it was


def test_not_enough_space_is_refused_before_fetching(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage

    def tiny_disk(path: Any) -> Any:
        return real(path)._replace(free=123_000)

    monkeypatch.setattr(selection.shutil, "disk_usage", tiny_disk)
    plan = store.plan("preview")
    assert not plan.enough_space and plan.free_bytes == 123_000
    with pytest.raises(NotEnoughSpaceError) as caught:
        store.download("preview")
    assert re.fullmatch(r"The download needs \d+ kB, 123 kB free on .+\.", caught.value.message), (
        caught.value.message
    )
    where = Path(caught.value.message.split(" free on ")[1].rstrip("."))
    assert store.root.is_relative_to(where)  # measured on the disk the store goes to
    assert hub.bytes_served() == 0


def test_offline_after_download_makes_no_network_request(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from spdesk.core.models import loading

    store.download("preview")
    hub.stop()
    attempts: list[Any] = []

    def no_network(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    offline = ModelStore(settings=StoreSettings(endpoint=hub.url))
    assert offline.require("preview") == offline.require("train")
    assert store.download("preview") == offline.require("preview")  # complete: no network
    encoder = load_encoder("sd15", "cpu")
    with torch.no_grad():
        latents = encoder.encode(torch.rand(1, 3, 32, 32)).mean
    assert latents.shape == (1, 4, 16, 16)
    pipe = loading.load_pipeline_from(offline.require("preview"))
    assert pipe.safety_checker is None
    assert offline.verify("preview").ok
    assert attempts == []


def test_missing_model_names_the_download_command() -> None:
    store = ModelStore()
    with pytest.raises(ModelMissingError) as caught:
        store.require("train")
    assert "spdesk models download --for train" in caught.value.message
    with pytest.raises(ModelMissingError, match="spdesk models download --for train"):
        encoder_folder("sd15")
    with pytest.raises(ModelMissingError, match="spdesk models download --for preview"):
        store.require("preview")


def test_load_encoder_sd15_comes_from_the_store(store: ModelStore) -> None:
    from spdesk.core.encoders import load_encoder

    with pytest.raises(ModelMissingError, match="spdesk models download --for train"):
        load_encoder("sd15", "cpu")
    assert installed_encoders() == []
    store.download("train")
    assert installed_encoders() == ["sd15"]
    # The default store (no endpoint given) finds the same folder: the root comes from SPDESK_HOME.
    assert encoder_folder("sd15") == store.require("train")
    encoder = load_encoder("sd15", "cpu")
    assert encoder.id == "sd15-vae"


def test_wrong_repository_id(hub: HubServer) -> None:
    settings = StoreSettings(endpoint=hub.url).with_override("train", repo_id="nobody/nothing")
    with pytest.raises(DownloadError) as caught:
        ModelStore(settings=settings).download("train")
    assert (
        caught.value.message == f"The model repository nobody/nothing was not found on {hub.url}."
    )
    assert "repository id" in (caught.value.hint or "")


def test_revision_that_does_not_exist(hub: HubServer) -> None:
    settings = StoreSettings(endpoint=hub.url).with_override("train", revision="0" * 40)
    with pytest.raises(DownloadError, match=f"The revision {'0' * 40} does not exist in {SD}"):
        ModelStore(settings=settings).download("train")


def test_unreachable_endpoint() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = ModelStore(settings=StoreSettings(endpoint=f"http://127.0.0.1:{port}"))
    with pytest.raises(
        DownloadError, match=r"The connection to http://127\.0\.0\.1:\d+ failed"
    ) as e:
        store.plan("train")
    # not "it resumes where it stopped", nor "nothing was fetched yet" beside a row that says
    # "Partly downloaded" (models audit)
    assert "nothing was fetched this time; what an earlier download fetched is kept" in (
        e.value.hint or ""
    )


def test_a_dropped_connection_is_resumed_without_fetching_twice(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloadmod, "CHUNK_BYTES", CHUNK)
    hub.drop(UNET, after=6 * CHUNK, times=1)
    events: list[Event] = []
    store.download("preview", on_event=events.append)
    assert hub.served[UNET] == len(sd_files[UNET])  # the resume asked only for the rest
    assert store.verify("preview").ok
    # Told, not only logged: the progress stood still while it asked again
    [retrying] = of_type(events, hubmod.TransferRetrying)
    assert (retrying.file, retrying.size) == (UNET, len(sd_files[UNET]))
    assert 0 < retrying.done <= 6 * CHUNK and retrying.reason and retrying.stalled == 0
    assert retrying.give_up == downloadmod.MAX_STALLS


def test_a_download_cut_short_near_its_end_does_not_say_it_stopped_at_its_full_size(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "stopped at 521 kB of 521 kB", as if the file had arrived."""
    monkeypatch.setattr(downloadmod, "RETRY_PAUSE_S", 0.0)
    size = len(sd_files[UNET])
    hub.drop(UNET, after=size - 10, times=50)
    with pytest.raises(DownloadError) as caught:
        store.download("preview")
    assert caught.value.message.startswith(
        f"The download of {UNET} stopped at {size - 10:,} bytes of {size:,} bytes"
    ), caught.value.message


def test_a_server_that_keeps_dropping_fails_clearly_and_keeps_the_partial_file(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloadmod, "RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(downloadmod, "CHUNK_BYTES", CHUNK)
    hub.drop(UNET, after=6 * CHUNK, times=50)
    with pytest.raises(DownloadError) as caught:
        store.download("preview")
    assert caught.value.message.startswith(f"The download of {UNET} stopped at 98 kB of 521 kB")
    assert "resumes where it stopped" in (caught.value.hint or "")
    part = store.folder_for("preview") / "unet" / "diffusion_pytorch_model.safetensors.part"
    assert part.stat().st_size == 6 * CHUNK
    hub.faults.drop_times.clear()
    hub.served.clear()
    store.download("preview")
    assert hub.served[UNET] == len(sd_files[UNET]) - 6 * CHUNK


def test_a_truncated_config_json_is_reported(store: ModelStore, hub: HubServer) -> None:
    hub.set_file(SD, REV, "vae/config.json", b'{"_class_name": "AutoencoderKL", "in_ch')
    with pytest.raises(ModelError) as caught:
        store.download("train")
    assert caught.value.message.startswith("vae/config.json in ")
    assert "is not valid JSON (truncated or damaged)" in caught.value.message
    assert store.find("train") is None


def test_taesd_is_handled_by_the_same_store(hub: HubServer, store: ModelStore) -> None:
    import torch

    taesd = tiny_taesd_repo_files()
    hub.add_repo(sources.TAESD_REPO, sources.TAESD_REVISION, taesd)
    folder = store.download("taesd")
    assert set(hub.served) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    assert {s.feature: s.present for s in store.status()}["taesd"]
    # "taesd" names it wherever an encoder is asked for (fine-tuning, training, eval).
    encoder = load_encoder("taesd", "cpu")
    assert encoder.id == "taesd" and not encoder.has_posterior
    assert encoder.encode(torch.rand(1, 3, 32, 32)).mean.shape[1] == 4


def test_the_token_is_the_librarys_own_and_never_written_by_spdesk(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert load_settings().resolved_endpoint() == hub.url
    ModelStore().download("train")
    assert all(a is None for a in hub.authorizations)  # nobody logged in: no token sent

    # What `hf auth login` leaves behind is used, for the listing and for the files.
    Path(hf_constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(hf_constants.HF_TOKEN_PATH).write_text("hf_logged_in")
    hub.authorizations.clear()
    ModelStore().download("preview")
    assert hub.authorizations and set(hub.authorizations) == {"Bearer hf_logged_in"}
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")  # the library's order: HF_TOKEN first
    hub.authorizations.clear()
    ModelStore().plan("preview")
    assert set(hub.authorizations) == {"Bearer hf_from_env"}

    # A token an older spdesk stored in its settings is dropped, never rewritten.
    path = save_settings(StoreSettings(endpoint=hub.url))
    legacy = json.loads(path.read_text())
    legacy["models"]["token"] = "hf_plain_text"
    path.write_text(json.dumps(legacy))
    save_settings(load_settings())
    assert "hf_plain_text" not in path.read_text() and "token" not in path.read_text()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the file wins over the variable
    assert ModelStore().plan("preview").endpoint == hub.url


def test_settings_carry_a_schema_version_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(StoreSettings(endpoint="http://example.invalid"), path)
    section = json.loads(path.read_text())["models"]
    assert section["version"] == settings_module.SCHEMA_VERSION
    assert load_settings(path).endpoint == "http://example.invalid"
    path.write_text(json.dumps({"models": {**section, "version": section["version"] + 1}}))
    with pytest.raises(ConfigError, match="written by a newer spdesk"):
        load_settings(path)


def test_a_huggingface_cache_with_the_pinned_revision_is_reused(
    sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = hf_cache_snapshot(sd_files, PREVIEW_FILES)
    store = ModelStore()  # no server at all
    folder = store.require("preview")
    assert {s.feature: s.origin for s in store.status()}["preview"] == "huggingface-cache"
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == sd_files[UNET]
    assert store.verify("preview").ok
    with monkeypatch.context() as blocked:
        blocked.setattr(socket.socket, "connect", None)  # any connection attempt would fail
        assert store.download("preview") == folder  # no second copy, no network
    unet_blob = (snapshot / UNET).resolve()
    unet_blob.write_bytes(b"damaged" + unet_blob.read_bytes()[7:])
    assert store.verify("preview").problems == [f"{UNET} does not match its sha256"]
    freed = store.remove()
    assert freed > 0 and unet_blob.is_file()  # the Hugging Face cache itself is never deleted


def test_remove_deletes_a_features_parts_and_marks_sharers_incomplete(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes]
) -> None:
    hub.add_repo(sources.TAESD_REPO, sources.TAESD_REVISION, tiny_taesd_repo_files())
    store.download("preview")
    store.download("taesd")
    vae = store.folder_for("train") / "vae" / "diffusion_pytorch_model.safetensors"
    assert store.remove("train") >= len(sd_files["vae/diffusion_pytorch_model.fp16.safetensors"])
    assert not vae.exists()
    status = {s.feature: s for s in store.status()}
    assert not status["train"].present and not status["preview"].present  # it used the VAE
    assert status["taesd"].present
    store.download("train")
    assert store.remove("preview") > 0
    assert store.find("train") is None and not store.folder_for("train").exists()
    assert store.find("taesd") is not None


def test_relocate_moves_the_store(store: ModelStore, tmp_path: Path) -> None:
    store.download("train")
    new = store.relocate(tmp_path / "elsewhere")
    assert load_settings().models_dir == str(new)
    assert ModelStore().require("train").is_relative_to(new)


def tree_listing(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative name) with the sha256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_relocate_refuses_a_file_or_a_folder_inside_the_store_before_moving(
    store: ModelStore, tmp_path: Path
) -> None:
    store.download("train")
    before = tree_listing(store.root)
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(ConfigError, match="is a file; choose a folder"):
        store.relocate(tmp_path / "a-file")
    with pytest.raises(ConfigError, match="is inside the model folder"):
        store.relocate(store.root / "sub")
    assert tree_listing(store.root) == before and (tmp_path / "a-file").read_text() == "mine"
    assert ModelStore().require("train").is_relative_to(store.root)


def _across_disks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rename fails as between two disks, so the store is copied."""
    import errno

    def cross_device(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "rename", cross_device)


def test_relocate_across_disks_copies_then_deletes_the_old_folder(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.download("train")
    old, before = store.root, tree_listing(store.root)
    _across_disks(monkeypatch)
    new = store.relocate(tmp_path / "other-disk" / "models")
    assert tree_listing(new) == before and not old.exists()
    assert ModelStore().require("train").is_relative_to(new)


def test_relocate_without_room_or_cut_short_moves_nothing(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No room on the other disk is refused before copying; a copy that fails midway (a
    full disk) is removed, and the models stay where they were, still found there."""
    import errno
    from collections import namedtuple

    store.download("train")
    old, before = store.root, tree_listing(store.root)
    target = tmp_path / "other-disk" / "models"
    _across_disks(monkeypatch)
    usage = namedtuple("usage", "total used free")
    with monkeypatch.context() as no_room:
        no_room.setattr(store_module.shutil, "disk_usage", lambda _p: usage(10, 9, 1))
        with pytest.raises(NotEnoughSpaceError, match="Moving the models needs"):
            store.relocate(target)
    real_copytree = shutil.copytree

    def full_midway(src: Path, dst: Path, *args: Any, **kwargs: Any) -> None:
        real_copytree(src, dst, *args, **kwargs)  # it copies each subfolder through this too
        if Path(dst) == target:  # all but the last byte: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.shutil, "copytree", full_midway)
    with pytest.raises(OutputError, match="Nothing was moved"):
        store.relocate(target)
    assert not target.exists() and tree_listing(old) == before
    assert ModelStore().require("train").is_relative_to(old)


def test_pinned_sources_live_in_one_place() -> None:
    for feature in sources.FEATURES:
        source = sources.default_source(feature)
        assert sources.is_full_commit(source.revision), feature
        assert not source.repo_id.startswith("runwayml/")
    assert sources.default_source("train").repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert sources.default_source("inpaint").repo_id == (
        "stable-diffusion-v1-5/stable-diffusion-inpainting"
    )
    spdesk_dir = Path(sources.__file__).resolve().parents[2]
    offenders = [
        p for p in spdesk_dir.rglob("*.py") if "runwayml/" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_a_second_download_into_the_same_folder_is_refused(store: ModelStore) -> None:
    from spdesk.core.models.layout import download_lock

    with (
        download_lock(store.folder_for("train")),
        pytest.raises(DownloadError, match=r"Another download into .* is running"),
    ):
        store.download("train")
    store.download("train")  # the lock is released with its holder


def test_a_server_ignoring_range_restarts_the_file_cleanly(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloadmod, "CHUNK_BYTES", CHUNK)
    cancel = CancelToken()

    def cancel_inside_the_unet(event: Event) -> None:
        progress = isinstance(event, hubmod.DownloadProgress)
        if progress and event.file == UNET and event.file_done >= 4 * CHUNK:  # type: ignore[attr-defined]
            cancel.cancel()

    with pytest.raises(Cancelled):
        store.download("preview", on_event=cancel_inside_the_unet, cancel=cancel)
    hub.faults.ignore_range = True
    hub.wait_idle()
    hub.served.clear()
    events: list[Event] = []
    store.download("preview", on_event=events.append)
    assert hub.served[UNET] == len(sd_files[UNET])  # whole file again, not appended twice
    assert of_type(events, hubmod.DownloadProgress)[-1].done == store.plan("preview").total_bytes
    assert store.verify("preview").ok


def test_a_gated_repository_needs_the_token(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.gated[SD] = "hf_right"
    with pytest.raises(DownloadError) as caught:
        ModelStore(settings=StoreSettings(endpoint=hub.url)).download("train")
    assert caught.value.message == f"{SD} on {hub.url} needs an access token that allows it."
    assert "hf auth login" in (caught.value.hint or "")
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    store = ModelStore(settings=StoreSettings(endpoint=hub.url))
    assert store.download("train").is_dir()


def test_offline_mode_refuses_downloads_with_a_plain_message(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DownloadError, match=r"Downloads are switched off \(HF_HUB_OFFLINE is set\)"
    ):
        store.download("train")


def test_inpaint_comes_from_its_own_pinned_repository(store: ModelStore, hub: HubServer) -> None:
    from spdesk.core.models import loading

    hub.add_repo(
        sources.SD15_INPAINT_REPO, sources.SD15_INPAINT_REVISION, tiny_sd_repo_files(inpaint=True)
    )
    folder = store.download("inpaint")
    assert folder.parts[-2:] == (
        "stable-diffusion-v1-5--stable-diffusion-inpainting",
        sources.SD15_INPAINT_REVISION,
    )
    assert store.find("train") is None  # the inpainting VAE does not stand in for the pinned one
    pipe = loading.load_pipeline_from(store.require("inpaint"), "inpaint")
    assert pipe.unet.config.in_channels == 9


def test_parts_published_only_as_bin_are_verified_and_converted_to_fp16_safetensors(
    store: ModelStore, hub: HubServer
) -> None:
    import torch
    from safetensors.torch import load_file

    from spdesk.core.models import loading

    files = without_safetensors(tiny_sd_repo_files(inpaint=True), ("vae", "unet"))
    assert "unet/diffusion_pytorch_model.fp16.bin" in files
    hub.add_repo(sources.SD15_INPAINT_REPO, sources.SD15_INPAINT_REVISION, files)
    folder = store.download("inpaint")
    fetched = {p for p in hub.served if p.startswith(("vae/", "unet/"))}
    assert fetched == {
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.bin",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.bin",
    }
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.part"))
    weights = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert store.verify("inpaint").ok
    pipe = loading.load_pipeline_from(store.require("inpaint"), "inpaint")
    assert pipe.unet.config.in_channels == 9
    damaged = folder / "unet" / "diffusion_pytorch_model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-2] + b"!!")
    assert store.verify("inpaint").problems == [
        "unet/diffusion_pytorch_model.safetensors does not match the sha256 recorded when it "
        "was converted (deleted: the next download fetches it)"
    ]


def test_a_full_disk_while_converting_a_bin_keeps_the_verified_download_for_the_next_run(
    store: ModelStore, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    files = without_safetensors(tiny_sd_repo_files(inpaint=True), ("vae", "unet"))
    hub.add_repo(sources.SD15_INPAINT_REPO, sources.SD15_INPAINT_REVISION, files)

    def full(tensors: Any, target: str) -> None:
        Path(target).write_bytes(b"cut")  # what safetensors' writer leaves of a failed write
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")  # fmt: skip

    with monkeypatch.context() as patched:
        patched.setattr("safetensors.torch.save_file", full)
        with pytest.raises(DiskFullError, match="The disk is full"):
            store.download("inpaint")
    folder = store.folder_for("inpaint")
    kept = [p.relative_to(folder).parts[0] for p in folder.rglob("*.part")]
    assert len(kept) == 1  # the verified .bin being converted stays
    assert not list(folder.rglob("*.tmp"))  # and no half-written safetensors

    hub.served.clear()
    store.download("inpaint")  # space freed: converted without fetching it again
    assert f"{kept[0]}/diffusion_pytorch_model.fp16.bin" not in hub.served
    assert store.verify("inpaint").ok


def test_a_bin_that_would_run_code_is_refused_even_with_the_right_sha256(
    store: ModelStore, hub: HubServer
) -> None:
    import pickle

    class RunsCode:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("this would run on load",))

    files = without_safetensors(tiny_sd_repo_files(inpaint=True), ("vae",))
    files["vae/diffusion_pytorch_model.fp16.bin"] = pickle.dumps({"w": RunsCode()})
    hub.add_repo(sources.SD15_INPAINT_REPO, sources.SD15_INPAINT_REVISION, files)
    with pytest.raises(ModelError, match="would run code to load; spdesk refuses it"):
        store.download("inpaint")
    vae = store.folder_for("inpaint") / "vae"
    assert not list(vae.glob("*.bin*")) and not list(vae.glob("*.safetensors*"))


# --- the models folder: which one, and moving it ------------------------------------------------
def test_the_models_dir_variable_wins_over_a_saved_folder_and_status_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPDESK_MODELS_DIR is this run's explicit choice: a folder saved earlier (spdesk models
    move, settings.json) silently won over it."""
    from spdesk.cli import main

    saved, chosen = tmp_path / "saved", tmp_path / "chosen"
    save_settings(StoreSettings(models_dir=str(saved)))
    assert ModelStore().root == saved
    assert "saved in the settings" in ModelStore().root_reason
    monkeypatch.setenv("SPDESK_MODELS_DIR", str(chosen))
    store = ModelStore()
    assert store.root == chosen
    assert "SPDESK_MODELS_DIR" in store.root_reason and str(saved) in store.root_reason
    assert main(["models", "status"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"Model folder: {chosen} (") and "SPDESK_MODELS_DIR" in first


def test_moving_the_folder_is_refused_while_the_models_dir_variable_chooses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saved folder would not be used while the variable is set: the models would move
    away from the folder this run (and the next, with the variable) looks in."""
    chosen = tmp_path / "chosen"
    (chosen / "kept").mkdir(parents=True)
    monkeypatch.setenv("SPDESK_MODELS_DIR", str(chosen))
    with pytest.raises(ConfigError, match="SPDESK_MODELS_DIR") as caught:
        ModelStore().relocate(tmp_path / "elsewhere")
    assert "Unset" in (caught.value.hint or "")
    assert (chosen / "kept").is_dir() and not (tmp_path / "elsewhere").exists()
    assert load_settings().models_dir is None


def test_moving_to_a_folder_that_cannot_be_written_is_refused_and_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing installed yet nothing is moved, but the folder must take files: it was
    saved, and every later download failed there."""
    real_open = store_module.os.open

    def read_only(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(tmp_path / "read-only")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "open", read_only)
    with pytest.raises(OutputError, match="permission"):
        ModelStore().relocate(tmp_path / "read-only")
    assert load_settings().models_dir is None


def test_moving_across_disks_tells_progress_and_a_cancel_moves_nothing(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.download("train")
    old, before = store.root, tree_listing(store.root)
    target = tmp_path / "other-disk" / "models"
    _across_disks(monkeypatch)
    cancel = CancelToken()
    events: list[Event] = []

    def cancel_at_the_first_file(event: Event) -> None:
        events.append(event)
        cancel.cancel()

    with pytest.raises(Cancelled, match="Nothing was moved"):
        store.relocate(target, on_event=cancel_at_the_first_file, cancel=cancel)
    assert not target.exists() and tree_listing(old) == before
    assert load_settings().models_dir is None and store.root == old
    (moving,) = of_type(events, hubmod.FolderMoveProgress)
    assert moving.done_bytes > 0 and moving.total_bytes == sum(
        p.stat().st_size for p in old.rglob("*") if p.is_file()
    )
    events.clear()
    new = store.relocate(target, on_event=events.append)
    assert tree_listing(new) == before and not old.exists()
    last = of_type(events, hubmod.FolderMoveProgress)[-1]
    assert last.done_bytes == last.total_bytes
    # each file by its path inside the models folder (the base name alone is the same for
    # the UNet, the VAE and the text encoder)
    vae = store.folder_for("train") / "vae" / "diffusion_pytorch_model.safetensors"
    copied = {e.file for e in of_type(events, hubmod.FolderMoveProgress)}
    assert vae.relative_to(new).as_posix() in copied, copied


def test_ctrl_c_during_models_move_across_disks_leaves_no_half_copy(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command passed no cancel token: Ctrl+C ended it with the copy half made (14,741
    files, 59 MB), and the same move was then refused: "is not empty"."""
    import spdesk.cli.models as cli
    from spdesk.cli import main

    store.download("train")
    old, before = store.root, tree_listing(store.root)
    target = tmp_path / "other-disk" / "models"
    _across_disks(monkeypatch)
    pressed = CancelToken()
    pressed.cancel()  # Ctrl+C as the copy starts
    monkeypatch.setattr(cli, "cancel_on_sigint", lambda: pressed)
    assert main(["models", "move", str(target)]) == 130
    assert not target.exists() and tree_listing(old) == before
    assert load_settings().models_dir is None


# --- words: sizes and hints --------------------------------------------------------------------
def test_sizes_in_messages_show_kilobytes_and_bytes_for_small_amounts() -> None:
    """ "Download cancelled; 0.0 MB kept" was said when 24 kB were kept."""
    assert [selection.human_size(n) for n in (0, 512, 24_000, 340_000, 3_400_000)] == [
        "0 bytes",
        "512 bytes",
        "24 kB",
        "340 kB",
        "3.4 MB",
    ]
    assert selection.human_size(1_720_000_000) == "1.72 GB"


def test_not_enough_space_and_a_full_disk_name_the_window_and_the_command(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hints are shown in the Models window too, where "spdesk models status shows where
    it is" meant nothing."""
    real = shutil.disk_usage
    monkeypatch.setattr(selection.shutil, "disk_usage", lambda path: real(path)._replace(free=1))
    with pytest.raises(NotEnoughSpaceError) as caught:
        store.download("train")
    full = downloadmod._disk_error(OSError(errno.ENOSPC, "No space left"), store.root / "x")
    for hint in (caught.value.hint or "", full.hint or ""):
        assert "Models window: Change folder…" in hint and "spdesk models move" in hint, hint
        assert "status shows" not in hint


def test_offline_mode_names_how_to_import_a_model_already_there(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as caught:
        store.download("train")
    hint = caught.value.hint or ""
    assert "Models window: Import…" in hint and "spdesk models import PATH" in hint, hint


def test_converted_weights_get_the_permissions_of_the_stores_other_files(
    store: ModelStore, hub: HubServer
) -> None:
    """safetensors' writer made them 0600 where every other store file is 0644 (the umask)."""
    import os
    import stat

    files = without_safetensors(tiny_sd_repo_files(inpaint=True), ("vae", "unet"))
    hub.add_repo(sources.SD15_INPAINT_REPO, sources.SD15_INPAINT_REVISION, files)
    folder = store.download("inpaint")
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


# --- the hub's errors, a broken server, a read-only folder, a download running ---------------
def test_a_server_error_while_downloading_a_file_is_the_hubs_not_the_disks(
    store: ModelStore, hub: HubServer
) -> None:
    """huggingface_hub's HTTP errors are OSErrors: a 500 was "Could not write ….part".
    A 404 (a mirror without the file) said "The server may be busy or down: try again later"."""
    for status, reason in ((500, "Internal Server Error"), (404, "Not Found")):
        hub.fail(UNET, status)
        with pytest.raises(DownloadError) as caught:
            store.download("preview")
        assert caught.value.message == (
            f"The hub at {hub.url} refused a request for {UNET} of {SD} ({status} {reason})."
        )
        hint = caught.value.hint or ""
        assert ("try again later" in hint) == (status == 500), hint
        assert ("check the endpoint, repository and revision" in hint) == (status == 404), hint
        assert "write" not in caught.value.user_text()


def test_a_server_error_asking_for_a_files_details_names_the_file_and_the_status(
    store: ModelStore, hub: HubServer
) -> None:
    """It was "A file is missing from …", naming no file: the HEAD's failure was the cause of
    the library's LocalEntryNotFoundError."""
    hub.fail(UNET, 403, head_too=True)
    with pytest.raises(DownloadError) as caught:
        store.download("preview")
    assert caught.value.message == (
        f"The hub at {hub.url} refused a request for {UNET} of {SD} (403 Forbidden)."
    )


def test_a_refused_listing_names_the_hub_once(store: ModelStore, hub: HubServer) -> None:
    """It said "The hub at URL refused a request for REPO on URL (403 Forbidden)"."""
    hub.fail_listing(403)
    with pytest.raises(DownloadError) as caught:
        store.download("train")
    assert (
        caught.value.message == f"The hub at {hub.url} refused a request for {SD} (403 Forbidden)."
    )


def test_a_cancel_while_listing_stops_at_once(store: ModelStore, hub: HubServer) -> None:
    """A 500 while listing is retried by huggingface_hub for about 23 s; a cancel waited."""
    hub.fail_listing(500)
    cancel = CancelToken()
    timer = threading.Timer(0.5, cancel.cancel)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        store.download("preview", cancel=cancel)
    assert time.monotonic() - started < 3
    assert not store.folder_for("preview").exists()


def test_a_failing_hubs_retries_are_told_and_a_cancel_during_them_stops_at_once(
    store: ModelStore, hub: HubServer
) -> None:
    """huggingface_hub retries a failing listing for some 25 s, and nothing said so."""
    hub.fail_listing(500)
    cancel = CancelToken()
    told: list[hubmod.HubRetrying] = []
    cancelled_at: list[float] = []

    def cancel_at_the_second_retry(event: Event) -> None:
        if isinstance(event, hubmod.HubRetrying):
            told.append(event)
            if len(told) == 2:
                cancelled_at.append(time.monotonic())
                cancel.cancel()

    with pytest.raises(Cancelled, match="nothing was fetched"):
        store.download("preview", on_event=cancel_at_the_second_retry, cancel=cancel)
    assert time.monotonic() - cancelled_at[0] < 2
    first = told[0]
    assert (first.endpoint, first.attempt, first.reason) == (
        hub.url,
        1,
        "it answered with error 500",
    )
    assert first.retries >= 2 and first.wait_s > 0
    assert first.text.startswith(f"Asking {hub.url} again in ")
    assert "(retry 1 of " in first.text and first.text.endswith(": it answered with error 500")
    assert not store.folder_for("preview").exists()


@pytest.mark.parametrize(
    ("said", "plain"),
    [
        ("[Errno 111] Connection refused", "the connection was refused"),
        ("The read operation timed out", "it did not answer in time"),
        ("[Errno -2] Name or service not known", "its name was not found"),
        ("[Errno 104] Connection reset by peer", "the connection was cut off"),
        ("Server disconnected without sending a response.", "it closed the connection"),
        ("[Errno 101] Network is unreachable", "the network is unreachable"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "its security cert"),
        ("something new", "the connection failed (something new)"),
    ],
)
def test_a_retry_after_a_network_error_says_why_in_plain_words(said: str, plain: str) -> None:
    """HubRetrying's reason was the network library's text ("[Errno 111] Connection refused")."""
    from spdesk.core.models import selection

    retries = selection._RetriesTold("http://hub.invalid")
    retries.thread = threading.get_ident()
    logger = logging.getLogger("spdesk-test-retries")
    logger.propagate = False
    logger.addHandler(retries)
    try:
        logger.warning(f"'{said}' thrown while requesting GET http://hub.invalid/api/models/x")
        logger.warning("Retrying in 1s [Retry 1/5].")
    finally:
        logger.removeHandler(retries)
    told = retries.told.get_nowait()
    assert told.reason.startswith(plain) and "Errno" not in told.reason, told.reason


def test_a_hub_that_takes_the_connection_and_never_answers_is_named_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A network that wants a sign-in page holds connections open: the listing has no read
    timeout, and "Checking what needs to be downloaded…" stayed for good."""
    import socket

    from spdesk.core.models import selection

    monkeypatch.setattr(selection, "LISTING_TIMEOUT_S", 1.0)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        store = ModelStore(settings=StoreSettings(endpoint=url))
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"did not answer within 1 s") as caught:
            store.download("preview")
        assert time.monotonic() - started < 5
        assert "sign in" in (caught.value.hint or "")
        assert not store.folder_for("preview").exists()
    finally:
        for connection in held:
            connection.close()
        listener.close()


def test_a_server_sending_more_than_a_file_holds_fails_after_a_few_tries(
    store: ModelStore, hub: HubServer, sd_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oversized .part was deleted and fetched again, oversized again, forever (2 GB in
    30 s for a 100 kB file)."""
    monkeypatch.setattr(downloadmod, "RETRY_PAUSE_S", 0.0)
    size = len(sd_files[UNET])
    hub.pad(UNET, 5 * size)
    progress: list[Any] = []
    with pytest.raises(DownloadError) as caught:
        store.download("preview", on_event=progress.append)
    assert caught.value.message.startswith(f"The hub at {hub.url} sent more bytes for {UNET} ")
    assert hub.served[UNET] <= downloadmod.MAX_OVERSIZED * 6 * size
    told = [e for e in of_type(progress, hubmod.DownloadProgress) if e.file == UNET]
    assert all(e.file_done <= size for e in told)
    part = store.folder_for("preview") / (UNET.replace(".fp16", "") + ".part")
    assert not part.exists() or part.stat().st_size <= size
    hub.faults.pad.clear()
    store.download("preview")  # the server is healthy again
    assert store.verify("preview").ok


def refuse_writes_below(root: Path, monkeypatch: pytest.MonkeyPatch, *methods: str) -> None:
    """Path ``methods`` (mkdir, unlink) fail under ``root`` as on a read-only disk."""
    for name in methods:
        real = getattr(Path, name)

        def refuse(self: Path, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if self.is_relative_to(root):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Path, name, refuse)


def test_a_read_only_models_folder_is_named_when_downloading_and_removing(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both were "unexpected error … This is a bug"."""
    with monkeypatch.context() as patched:
        refuse_writes_below(store.root, patched, "mkdir")
        with pytest.raises(ReadOnlyDiskError) as caught:
            store.download("train")
    assert "spdesk models move" in (caught.value.hint or "")
    folder = store.download("train")
    with monkeypatch.context() as patched:
        refuse_writes_below(store.root, patched, "unlink")
        with pytest.raises(ReadOnlyDiskError) as caught:
            store.remove("train")
    assert "read-only" in caught.value.message
    assert "spdesk models move" in (caught.value.hint or "")
    assert store.find("train") == (folder, "downloaded")


def test_remove_and_verify_leave_a_running_download_alone(store: ModelStore) -> None:
    """remove deleted the files (and the lock) under a running download."""
    from spdesk.core.files import LOCK_NAME
    from spdesk.core.models.layout import download_lock

    folder = store.download("train")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    with download_lock(folder):
        for action in (lambda: store.remove("train"), lambda: store.verify("train"), store.remove):
            with pytest.raises(ModelError, match=f"A download into {re.escape(str(folder))} is"):
                action()
        # Moved under it, the download wrote into a folder that was gone ("No such file").
        with pytest.raises(ModelError, match=r"is running .*nothing was moved"):
            store.relocate(store.root.parent / "elsewhere")
        assert load_settings().models_dir is None
        assert weights.is_file() and (folder / LOCK_NAME).is_file()
    assert not store.verify("train").ok and not weights.exists()
    assert store.remove("train") > 0 and not folder.exists()


def test_removing_preview_says_it_also_removes_the_training_vae(store: ModelStore) -> None:
    """train and preview share the VAE: removing one silently took the other's too."""
    assert store.removal_note("preview") == store.removal_note("train") == ""  # none installed
    store.download("preview")
    assert store.removal_note("preview") == (
        "this also removes the VAE that training and fine-tuning with sd15 use"
    )
    assert store.removal_note("train") == (
        "this also removes the VAE that the preview (Stable Diffusion 1.5) uses"
    )
    assert store.removal_note("taesd") == store.removal_note("inpaint") == ""


def hf_cache_snapshot(files: dict[str, bytes], names: set[str], missing: str = "") -> Path:
    """A Hugging Face cache of the pinned SD 1.5 commit: snapshot links to blobs named by ETag;
    ``missing``'s blob is not there (an interrupted or cleaned cache)."""
    cache = Path(os.environ["HF_HOME"]) / "hub" / f"models--{SD.replace('/', '--')}"
    snapshot = cache / "snapshots" / REV
    for name in names:
        data = files[name]
        etag = hashlib.sha256(data).hexdigest()  # LFS: sha256; others: git blob sha1
        if not name.endswith(".safetensors"):
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = cache / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        if name != missing:
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    return snapshot


def test_a_huggingface_cache_missing_a_weights_file_is_never_installed(
    sd_files: dict[str, bytes],
) -> None:
    """Its broken link counted as weights: "installed" once, then "not installed"."""
    snapshot = hf_cache_snapshot(sd_files, PREVIEW_FILES, missing=UNET)
    store = ModelStore()
    for _ in range(2):
        assert store.find("preview") is None
        assert not {s.feature: s for s in store.status()}["preview"].present
    links = store.root / "hf-cache"
    broken = [p for p in links.rglob("*") if p.is_symlink() and not p.exists()]
    assert broken == []
    (snapshot / UNET).resolve().write_bytes(sd_files[UNET])  # the blob comes back
    assert store.find("preview") is not None and store.verify("preview").ok


def test_a_broken_link_left_in_the_store_is_replaced(sd_files: dict[str, bytes]) -> None:
    hf_cache_snapshot(sd_files, PREVIEW_FILES)
    store = ModelStore()
    folder = store.root / "hf-cache" / SD.replace("/", "--") / REV
    stale = folder / "unet" / "diffusion_pytorch_model.safetensors"
    stale.parent.mkdir(parents=True)
    stale.symlink_to(folder / "gone")
    assert store.find("preview") == (folder, "huggingface-cache")
    assert stale.read_bytes() == sd_files[UNET]
