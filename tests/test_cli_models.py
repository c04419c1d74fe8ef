"""``spdesk models`` end to end against the local hub server; plain errors and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_server import HubServer, tiny_sd_repo_files
from PIL import Image
from tiny_sd import save_tiny_sd, save_tiny_taesd, save_tiny_vae

from spdesk.cli import main
from spdesk.cli.common import EXIT_CANCELLED, EXIT_ERROR, EXIT_FAILED, EXIT_OK
from spdesk.core.models import sources


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with HubServer() as server:
        server.add_repo(sources.SD15_REPO, sources.SD15_REVISION, tiny_sd_repo_files())
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def test_status_download_verify_remove(hub: HubServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "status", "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert [f["present"] for f in status["features"]] == [False] * 4
    assert main(["models", "status"]) == EXIT_OK
    assert "not installed; run: spdesk models download --for train" in capsys.readouterr().out

    assert main(["models", "download", "--for", "train"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert err.startswith(f"Asking {hub.url} for {sources.SD15_REPO}...")  # before any wait
    assert "2 files" in err and "to fetch" in err and "diffusion_pytorch_model.fp16" in err
    assert "100.0%" in err  # the last progress line
    # Each file by its path in the repository: "diffusion_pytorch_model.fp16.safetensors" alone
    # was the UNet's, the VAE's and the text encoder's name alike.
    progress = [line for line in err.splitlines() if "%" in line]
    assert progress and all(" vae/" in line for line in progress), progress
    assert out.startswith("Installed and verified in ")

    assert main(["models", "download", "--for", "train", "--json"]) == EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["already_installed"] and again["fetched_bytes"] == 0

    assert main(["models", "verify", "--json"]) == EXIT_OK
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] and [r["feature"] for r in verified["results"]] == ["train"]

    folder = Path(again["folder"])
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    assert main(["models", "verify", "--for", "train"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "does not match its sha256" in err and "spdesk models download --for train" in err

    assert main(["models", "download", "--for", "train", "--json"]) == EXIT_OK
    refetched = json.loads(capsys.readouterr().out)
    assert refetched["fetched_bytes"] == weights.stat().st_size  # only the damaged file

    assert main(["models", "remove", "--for", "train", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["freed_bytes"] > 0
    assert main(["models", "status", "--json"]) == EXIT_OK
    assert not json.loads(capsys.readouterr().out)["features"][0]["present"]


def test_a_dropped_connection_is_said_as_it_is_asked_again(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the log said "asking again from byte N": the bar stood still meanwhile."""
    weights = "vae/diffusion_pytorch_model.fp16.safetensors"
    hub.drop(weights, after=4096, times=1)
    assert main(["models", "download", "--for", "train"]) == EXIT_OK
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "the connection stopped at" in line]
    assert len(said) == 1, err
    assert said[0].startswith(f"{weights}: the connection stopped at ")
    assert said[0].endswith("; asking again from there in 1 s."), said[0]


def test_removing_preview_says_the_training_vae_goes_with_it(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The preview's pipeline holds training's VAE: removing it took --encoder sd15 silently."""
    del hub
    assert main(["models", "download", "--for", "preview"]) == EXIT_OK
    capsys.readouterr()
    assert main(["models", "remove", "--for", "preview"]) == EXIT_OK
    said = capsys.readouterr().out
    assert "this also removes the VAE that training and fine-tuning with sd15 use" in said


def test_download_errors_are_plain_messages(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.set_file(sources.SD15_REPO, sources.SD15_REVISION, "vae/config.json", b'{"_class')
    assert main(["models", "download"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "\nspdesk: vae/config.json in " in err
    assert "is not valid JSON (truncated or damaged)" in err
    assert "Traceback" not in err


def test_missing_model_message_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):  # a folder training takes: the model is what is missing
        Image.new("RGB", (48, 40), (120, 90, 60)).save(photos / name)
    argv = ["train", str(photos), "--out", str(tmp_path / "p.safetensors"), "--encoder", "sd15"]
    assert main([*argv, "--steps", "1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "spdesk models download --for train" in err


def test_import_move_and_remove_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vae = save_tiny_vae(tmp_path / "my-vae")
    assert main(["models", "import", str(vae), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["name"] == "my-vae" and result["provides"] == ["train"]
    assert main(["models", "status", "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    train = status["features"][0]
    assert train["present"] and train["origin"] == "imported" and train["verified"]
    assert [i["name"] for i in status["imported"]] == ["my-vae"]

    assert main(["models", "move", str(tmp_path / "moved"), "--json"]) == EXIT_OK
    moved = json.loads(capsys.readouterr().out)
    assert moved["to"] == str((tmp_path / "moved").resolve())
    assert main(["models", "status", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["features"][0]["folder"].startswith(moved["to"])

    assert main(["models", "import", str(vae)]) == EXIT_ERROR
    assert "already imported" in capsys.readouterr().err
    assert main(["models", "remove", "--imported", "my-vae"]) == EXIT_OK
    assert "freed" in capsys.readouterr().out
    assert main(["models", "import", str(tmp_path / "nowhere")]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err


def test_remove_all_in_a_shared_folder_removes_only_what_the_store_installed(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conftest import tree_hashes

    shared = tmp_path / "shared-models"
    sd_folder = shared / "stable-diffusion-v1-5--stable-diffusion-v1-5"
    theirs = {
        shared / "notes.txt": b"someone else's notes",
        shared / "imported" / "their-model" / "weights.safetensors": b"not spdesk's",
        sd_folder / "README.md": b"their readme, in a folder name the store also uses",
        sd_folder / sources.SD15_REVISION / "vae" / "their.part": b"their partial file",
    }
    for path, data in theirs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    before = tree_hashes(shared)
    monkeypatch.setenv("SPDESK_MODELS_DIR", str(shared))
    assert main(["models", "download", "--for", "train"]) == EXIT_OK
    assert main(["models", "import", str(save_tiny_vae(tmp_path / "my-vae"))]) == EXIT_OK
    capsys.readouterr()
    assert tree_hashes(shared) != before

    assert main(["models", "remove", "--all", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["freed_bytes"] > 0
    assert tree_hashes(shared) == before  # every other file untouched, all of the store's gone
    assert main(["models", "status", "--json"]) == EXIT_OK
    assert not any(f["present"] for f in json.loads(capsys.readouterr().out)["features"])


@pytest.mark.parametrize("damage", ["cut-short", "deleted"])
def test_verify_reports_a_download_damaged_since_instead_of_nothing_to_verify(
    hub: HubServer, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """A file cut short or deleted made the model "not installed": verify said "Nothing
    installed to verify." and exited 0 ({"ok": true, "results": []})."""
    assert main(["models", "download", "--for", "train", "--json"]) == EXIT_OK
    folder = Path(json.loads(capsys.readouterr().out)["folder"])
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    if damage == "cut-short":
        weights.write_bytes(weights.read_bytes()[:50_000])
    else:
        weights.unlink()
    assert main(["models", "verify", "--json"]) == EXIT_FAILED
    verified = json.loads(capsys.readouterr().out)
    (train,) = verified["results"]
    assert not verified["ok"] and train["feature"] == "train"
    assert "diffusion_pytorch_model.safetensors" in train["problems"][0]
    assert main(["models", "download", "--for", "train"]) == EXIT_OK  # fetches it again
    capsys.readouterr()
    assert main(["models", "verify"]) == EXIT_OK


def test_a_model_manifest_of_the_wrong_shape_reads_as_empty(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "files": [] failed every command as "unexpected error (AttributeError: 'list' object has
    no attribute 'get')"."""
    assert main(["models", "download", "--for", "train", "--json"]) == EXIT_OK
    folder = Path(json.loads(capsys.readouterr().out)["folder"])
    manifest = folder / "spdesk-manifest.json"
    assert manifest.is_file()
    manifest.write_text(json.dumps({"files": [], "features": {"train": "vae"}}))
    assert main(["models", "status"]) == EXIT_OK
    assert "unexpected" not in capsys.readouterr().err
    assert main(["models", "download", "--for", "train"]) == EXIT_OK  # checks it, then verified
    assert "unexpected" not in capsys.readouterr().err


def test_verify_finds_changed_bytes_in_an_imported_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "import", str(save_tiny_vae(tmp_path / "my-vae")), "--json"]) == EXIT_OK
    folder = Path(json.loads(capsys.readouterr().out)["folder"])
    assert main(["models", "verify", "--for", "train"]) == EXIT_OK
    capsys.readouterr()
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit changed inside the weights
    weights.write_bytes(bytes(data))
    assert main(["models", "verify", "--for", "train"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "vae/diffusion_pytorch_model.safetensors does not match the sha256 recorded" in err
    again = "spdesk models remove --imported my-vae, then spdesk models import"
    assert again in err and "models download" not in err  # the store cannot fetch an import
    assert main(["models", "status"]) == EXIT_OK
    (row,) = [line for line in capsys.readouterr().out.splitlines() if " train " in line]
    assert "damaged" in row and "verified" not in row and again in row


def test_verify_of_everything_checks_an_import_no_feature_uses_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two imports provide train: one is used, the other stays listed in status, and a verify
    of everything re-hashed only the one used, so nothing could check the other."""
    for name in ("a-vae", "b-vae"):
        assert main(["models", "import", str(save_tiny_vae(tmp_path / name))]) == EXIT_OK
    capsys.readouterr()
    assert main(["models", "verify"]) == EXIT_OK
    said = capsys.readouterr().out
    unused = Path(said.split("imported b-vae: 2 files verified in ")[1].splitlines()[0])
    assert "train: 2 files verified in " in said and unused.name == "b-vae"
    weights = unused / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["models", "verify", "--for", "train"]) == EXIT_OK  # the one used: sound
    capsys.readouterr()
    assert main(["models", "verify", "--json"]) == EXIT_FAILED
    rows = {row["feature"]: row for row in json.loads(capsys.readouterr().out)["results"]}
    assert rows["train"]["ok"] and not rows["imported b-vae"]["ok"]
    assert main(["models", "verify"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "imported b-vae: vae/diffusion_pytorch_model.safetensors does not match" in err
    assert "run: spdesk models remove --imported b-vae, then spdesk models import" in err


def test_verify_help_says_what_happens_to_damaged_downloads_and_imports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    actions = " ".join(capsys.readouterr().out.split())  # as one line, however wrapped
    verify = actions[actions.index("verify re-hash") : actions.index(" remove ")]
    assert "download is deleted" in verify and "import is kept" in verify


def test_the_hub_clients_own_console_warnings_go_to_the_log_file(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    assert main(["models", "download", "--for", "train", "--quiet"]) == EXIT_OK
    capsys.readouterr()
    hub_logger = logging.getLogger("huggingface_hub")
    assert not [h for h in hub_logger.handlers if type(h) is logging.StreamHandler]
    assert not hub_logger.propagate  # nor through the root logger's console
    records: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = records.append  # type: ignore[method-assign]
    hub_logger.addHandler(catcher)
    try:
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    finally:
        hub_logger.removeHandler(catcher)
    assert [r.getMessage() for r in records] == ["Retrying in 1s [Retry 1/5]."]
    assert "Retrying" not in capsys.readouterr().err


_UNREACHABLE_HUB = """
import sys, time
real_sleep = time.sleep
time.sleep = lambda seconds: real_sleep(min(seconds, 0.01))  # the client's back-off, made short
from spdesk.cli import main
sys.exit(main(["models", "download", "--for", "train"]))
"""


def test_an_unreachable_hubs_retries_go_to_the_log_not_the_terminal(tmp_path: Path) -> None:
    """A process of its own, in which the hub client is first imported by the download: its
    console handler, made at that import, printed each retry ("... thrown while requesting GET
    ... Retrying in 1s [Retry 1/5]", ten lines) before spdesk's own message."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    done = subprocess.run(
        [sys.executable, "-c", _UNREACHABLE_HUB],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR, done.stderr
    said = done.stderr.splitlines()
    assert said[0].startswith(f"Asking http://127.0.0.1:{port} for ")
    # Each retry in spdesk's words (some 25 s were silent), none in the library's
    retries = said[1:-2]
    assert retries and all(
        line.startswith(f"Asking http://127.0.0.1:{port} again in ") for line in retries
    ), said
    assert "(retry 1 of " in retries[0] and "Ctrl+C stops" in retries[0]
    # In plain words: it said "[Errno 111] Connection refused"
    assert ": the connection was refused (" in retries[0] and "Errno" not in retries[0]
    assert "thrown while requesting" not in done.stderr and "Retrying in" not in done.stderr
    assert said[-2].startswith(f"spdesk: The connection to http://127.0.0.1:{port} failed")
    assert "Check the internet connection" in said[-1]
    log = Path(os.environ["SPDESK_HOME"]) / "logs" / "spdesk.log"
    assert "Retrying in" in log.read_text(encoding="utf-8")


def test_importing_keeps_the_model_libraries_bars_and_advice_off_the_terminal(
    tmp_path: Path,
) -> None:
    """Checking a model loads each part: diffusers' and transformers' loading bars and notes
    ("config attributes ... will be ignored", "requires torchvision") go to the log file."""
    import subprocess
    import sys

    models = [save_tiny_taesd(tmp_path / "taesd.safetensors"), save_tiny_sd(tmp_path / "sd")]
    for model in models:
        # A process of its own: in this one, the libraries' console handlers were made at import.
        done = subprocess.run(
            [sys.executable, "-m", "spdesk", "models", "import", str(model)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert f"Imported {model.stem}" in done.stdout
        for noise in ("Loading", "it/s]", "config attributes", "torchvision", "accelerate"):
            assert noise not in done.stderr, (noise, done.stderr)


def test_a_perturbation_or_generator_given_as_a_model_says_what_it_is_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spdesk.core.generator_file import bundled_generator_path
    from spdesk.core.perturbation import bundled_perturbation_path

    for file, use in ((bundled_perturbation_path(), "--perturbation"),
                      (bundled_generator_path(), "--generator")):  # fmt: skip
        assert main(["models", "import", str(file)]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "made by spdesk, not a model" in err and f"spdesk protect {use}" in err


def test_a_damaged_perturbation_given_as_a_model_is_not_sent_to_perturbation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from spdesk.core.perturbation import bundled_perturbation_path

    with safe_open(str(bundled_perturbation_path()), framework="numpy") as handle:
        meta, delta = handle.metadata(), handle.get_tensor("delta")
    damaged = tmp_path / "damaged.safetensors"
    save_file({"delta": np.full_like(delta, np.nan)}, str(damaged), metadata=meta)
    assert main(["models", "import", str(damaged)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "damaged.safetensors is a damaged universal perturbation made by spdesk" in err
    assert "--perturbation" not in err


def test_ctrl_c_during_a_download_says_what_was_kept_and_that_the_next_run_resumes(
    hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal
    import subprocess
    import sys

    weights = "vae/diffusion_pytorch_model.fp16.safetensors"  # what "train" fetches
    hub.trickle(weights, piece=4096, pause_s=0.2)  # about 5 s for the tiny VAE
    command = [sys.executable, "-m", "spdesk", "models", "download", "--for", "train"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        said = ""
        while not said.endswith("\n") or "% vae/diffusion_pytorch_model.fp16" not in said:
            char = process.stderr.read(1)
            assert char, said
            said += char
        process.send_signal(signal.SIGINT)
        said += process.stderr.read()
        assert process.wait(timeout=60) == EXIT_CANCELLED
    assert "Download cancelled; " in said and "kept, the next download resumes." in said, said

    assert main(["models", "status"]) == EXIT_OK
    assert "train    partly downloaded (" in capsys.readouterr().out, said


def test_ctrl_c_while_asking_the_hub_stops_at_once(hub: HubServer) -> None:
    """The listing never looked at Ctrl+C: a failing server's 23 s of retries ran on, then the
    command failed with exit 2."""
    import signal
    import subprocess
    import sys
    import time

    hub.fail_listing(500)
    command = [sys.executable, "-m", "spdesk", "models", "download", "--for", "train"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        asking = process.stderr.readline()
        assert asking.startswith("Asking "), asking
        time.sleep(1.0)  # into the retries
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        assert process.wait(timeout=60) == EXIT_CANCELLED
        said = process.stderr.read()
    assert time.monotonic() - interrupted < 5
    assert "nothing was fetched" in said, said


def test_remove_says_so_when_nothing_was_installed(capsys: pytest.CaptureFixture[str]) -> None:
    """It said "Removed the inpaint model files: 0 bytes freed." for a model never installed."""
    assert main(["models", "remove", "--for", "inpaint"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("Nothing to remove: no inpaint model files are installed in ")
    assert main(["models", "remove", "--all"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("Nothing to remove: spdesk has installed no model")
