"""A local stand-in for the Hugging Face hub, for tests (127.0.0.1, a thread, no internet).

It speaks the parts of the hub protocol that huggingface_hub and spdesk's downloader use:

- ``GET /api/models/{repo}/revision/{rev}`` (``?blobs=true`` adds sizes, blob ids and LFS sha256),
  401 ``X-Error-Code: RepoNotFound`` for an unknown repository (the real hub answers 401, not
  404, so as not to reveal private repositories) and 404 ``RevisionNotFound`` for a bad revision;
- ``GET /api/models/{repo}/tree/{rev}`` (the recursive listing ``snapshot_download`` uses), one
  page, with the same errors;
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Linked-Etag``,
  ``X-Linked-Size``, ``X-Repo-Commit`` and ``Range`` (206 / 416);
- gated repositories (``gated[repo] = token``): 401 ``GatedRepo`` without that bearer token.

Faults can be injected per file: drop the connection after N bytes, corrupt the bytes of the next
GETs, serve it slowly (a trickle), answer late (hold), answer an HTTP error status, send more
bytes than the file has, or replace a file's content (e.g. a truncated ``config.json``). It counts
the body bytes it serves per file. It stops itself after ``lifetime_s`` even if a test forgets to.

Use it as a context manager::

    with HubServer() as hub:
        hub.add_repo("org/name", REVISION, files)   # {path: bytes}
        settings = StoreSettings(endpoint=hub.url)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pth", ".pt")
_INFO = re.compile(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$")
_TREE = re.compile(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` as ``{posix relative path: bytes}`` (a repository's content)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class Faults:
    """Injected failures; each counter is consumed by the GETs it affects."""

    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping
    drop_times: dict[str, int] = field(default_factory=dict)  # path -> how many GETs drop
    corrupt_times: dict[str, int] = field(default_factory=dict)  # path -> how many GETs corrupt
    ignore_range: bool = False  # answer 200 with the whole file to Range requests
    trickle: dict[str, tuple[int, float]] = field(default_factory=dict)  # path -> (piece, pause)
    status: dict[str, tuple[int, bool]] = field(default_factory=dict)  # path -> (code, HEAD too)
    pad: dict[str, int] = field(default_factory=dict)  # path -> extra bytes after the file's own
    listing_status: int = 0  # answered to every tree listing when set
    hold: dict[str, list[float]] = field(default_factory=dict)  # path -> waits before answers


class HubServer:
    """The local hub; ``url`` is its endpoint; ``served`` counts body bytes per path."""

    def __init__(self, *, lifetime_s: float = 120.0) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.faults = Faults()
        self.served: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self._active = 0  # requests being answered
        self.holding = threading.Event()  # a request of a path held (see hold) is waiting
        self.gated: dict[str, str] = {}  # repo id -> the token it needs
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_repo(self, repo_id: str, revision: str, files: Mapping[str, bytes]) -> None:
        self.repos.setdefault(repo_id, {})[revision] = dict(files)

    def set_file(self, repo_id: str, revision: str, path: str, data: bytes) -> None:
        """Replace one file's content (listing and headers follow it, as on a real hub)."""
        self.repos[repo_id][revision][path] = data

    def drop(self, path: str, *, after: int, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` send ``after`` body bytes and close the socket."""
        self.faults.drop_after[path] = after
        self.faults.drop_times[path] = times

    def corrupt(self, path: str, *, times: int = 1) -> None:
        """The next ``times`` GETs of ``path`` serve bytes with one bit flipped."""
        self.faults.corrupt_times[path] = times

    def trickle(self, path: str, *, piece: int, pause_s: float) -> None:
        """Serve ``path`` slowly, as a poor connection does: ``piece`` bytes, then a pause."""
        self.faults.trickle[path] = (piece, pause_s)

    def fail(self, path: str, status: int, *, head_too: bool = False) -> None:
        """Answer ``status`` to every GET of ``path`` (and HEAD, which listing uses, if asked)."""
        self.faults.status[path] = (status, head_too)

    def fail_listing(self, status: int) -> None:
        """Answer ``status`` to every tree listing (huggingface_hub retries a 5xx for ~23 s)."""
        self.faults.listing_status = status

    def hold(self, path: str, *waits_s: float) -> None:
        """Answer the next requests (HEAD or GET) of ``path`` only after ``waits_s`` seconds
        each, as a hub slow to answer does; ``holding`` is set once one waits."""
        self.faults.hold[path] = list(waits_s)

    def pad(self, path: str, extra: int) -> None:
        """Every GET of ``path`` sends ``extra`` bytes more than the file has (Content-Length
        included), as a broken server or proxy may."""
        self.faults.pad[path] = extra

    def bytes_served(self) -> int:
        return sum(self.served.values())

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until no request is being answered. A client that cancels closes its socket,
        but the server may still be writing (into socket buffers) and counting: wait for that
        before resetting ``served``."""
        deadline = time.monotonic() + timeout_s
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self) -> HubServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- protocol ----------------------------------------------------------------------------
    def info(
        self, repo_id: str, revision: str, blobs: bool, authorization: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if repo_id not in self.repos:
            return _error(401, "RepoNotFound", "Repository not found")
        if repo_id in self.gated and authorization != f"Bearer {self.gated[repo_id]}":
            return _error(401, "GatedRepo", "Access to this model is restricted")
        if revision not in self.repos[repo_id]:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        siblings = []
        for path, data in sorted(self.repos[repo_id][revision].items()):
            entry: dict[str, object] = {"rfilename": path}
            if blobs:
                entry["size"] = len(data)
                entry["blobId"] = git_blob_sha1(data)
                if is_lfs(path):
                    pointer = _lfs_pointer(data)
                    entry["size"] = len(data)
                    entry["blobId"] = git_blob_sha1(pointer)
                    entry["lfs"] = {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": len(pointer),
                    }
            siblings.append(entry)
        body = {"id": repo_id, "modelId": repo_id, "sha": revision, "private": False}
        body["siblings"] = siblings
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def tree(
        self, repo_id: str, revision: str, authorization: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = self.info(repo_id, revision, False, authorization)
        if status != 200:
            return status, headers, body
        entries = []
        for path, data in sorted(self.repos[repo_id][revision].items()):
            entry: dict[str, object] = {"type": "file", "path": path, "size": len(data)}
            entry["oid"] = git_blob_sha1(data)
            if is_lfs(path):
                pointer = _lfs_pointer(data)
                entry["oid"] = git_blob_sha1(pointer)
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": len(pointer)}
            entries.append(entry)
        return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()

    def file_headers(self, revision: str, path: str, data: bytes) -> dict[str, str]:
        headers = {"X-Repo-Commit": revision, "Accept-Ranges": "bytes"}
        if is_lfs(path):
            sha = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "ETag": f'"{git_blob_sha1(_lfs_pointer(data))}"',
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                }
            )
        else:
            headers["ETag"] = f'"{git_blob_sha1(data)}"'
        return headers

    def take_fault(self, table: dict[str, int], path: str) -> bool:
        with self._lock:
            if table.get(path, 0) > 0:
                table[path] -= 1
                return True
            return False


def _lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
    return text.encode()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
    return status, headers, json.dumps({"error": message}).encode()


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` for ``bytes=a-`` / ``bytes=a-b``; None when absent."""
    if not value or not value.startswith("bytes="):
        return None
    first, _, last = value[len("bytes=") :].partition("-")
    start = int(first)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet tests
            pass

        def do_HEAD(self) -> None:
            self._counted(send_body=False)

        def do_GET(self) -> None:
            self._counted(send_body=True)

        def _counted(self, *, send_body: bool) -> None:
            with hub._lock:
                hub._active += 1
            try:
                self._serve(send_body=send_body)
            finally:
                with hub._lock:
                    hub._active -= 1

        def _serve(self, *, send_body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, path))
            hub.authorizations.append(self.headers.get("Authorization"))
            info = _INFO.match(path)
            if info:
                blobs = "blobs=true" in url.query.lower()
                auth = self.headers.get("Authorization")
                status, headers, body = hub.info(info[1], info[2], blobs, auth)
                self._reply(status, headers, body if send_body else b"", len(body))
                return
            tree = _TREE.match(path)
            if tree and hub.faults.listing_status:
                status, headers, body = _error(hub.faults.listing_status, "", "injected failure")
                self._reply(status, headers, body, len(body))
                return
            if tree:
                auth = self.headers.get("Authorization")
                status, headers, body = hub.tree(tree[1], tree[2], auth)
                self._reply(status, headers, body if send_body else b"", len(body))
                return
            resolve = _RESOLVE.match(path)
            if resolve is None:
                status, headers, body = _error(404, "EntryNotFound", "Not found")
                self._reply(status, headers, body, len(body))
                return
            self._serve_file(resolve[1], resolve[2], resolve[3], send_body)

        def _serve_file(self, repo_id: str, revision: str, path: str, send_body: bool) -> None:
            if (waits := hub.faults.hold.get(path)) and (wait := waits.pop(0)):
                hub.holding.set()
                time.sleep(wait)
            code, head_too = hub.faults.status.get(path, (0, False))
            if code and (send_body or head_too):
                status, headers, body = _error(code, "", f"injected failure of {path}")
                self._reply(status, headers, body if send_body else b"", len(body))
                return
            auth = self.headers.get("Authorization")
            status, headers, body = hub.info(repo_id, revision, blobs=False, authorization=auth)
            files = hub.repos.get(repo_id, {}).get(revision, {})
            if status == 200 and path not in files:
                status, headers, body = _error(404, "EntryNotFound", f"{path} not found")
            if status != 200:
                self._reply(status, headers, body, len(body))
                return
            data = files[path]
            headers = hub.file_headers(revision, path, data)
            wanted = (
                None if hub.faults.ignore_range else _parse_range(self.headers["Range"], len(data))
            )
            if wanted is not None and wanted[0] >= len(data):
                self._reply(416, {"Content-Range": f"bytes */{len(data)}"}, b"", 0)
                return
            start, end = wanted if wanted is not None else (0, len(data) - 1)
            if wanted is not None:
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            body = data[start : end + 1]
            if send_body:  # HEAD keeps telling the true size
                body += b"Z" * hub.faults.pad.get(path, 0)
            if send_body and hub.take_fault(hub.faults.corrupt_times, path) and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            code = 206 if wanted is not None else 200
            if send_body and hub.take_fault(hub.faults.drop_times, path):
                cut = max(0, hub.faults.drop_after[path] - start)
                self._reply(code, headers, body[:cut], len(body), path=path)
                self.close_connection = True
                return
            self._reply(code, headers, body if send_body else b"", len(body), path=path)

        def _reply(
            self,
            status: int,
            headers: dict[str, str],
            body: bytes,
            length: int,
            *,
            path: str | None = None,
        ) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            piece, pause = hub.faults.trickle.get(path or "", (len(body), 0.0))
            for start in range(0, len(body), max(piece, 1)):
                sent = body[start : start + piece]
                try:
                    self.wfile.write(sent)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client hung up
                    self.close_connection = True
                    return
                if path is not None:
                    with hub._lock:
                        hub.served[path] += len(sent)
                if pause and start + piece < len(body):
                    time.sleep(pause)

    return Handler


# --- tiny repositories ---------------------------------------------------------------------------
_REPO_CACHE: dict[bool, dict[str, bytes]] = {}

# Files a real SD 1.5 repository also holds, which the store must never fetch.
NEVER_FETCHED = {
    "safety_checker/config.json": b'{"_class_name": "StableDiffusionSafetyChecker"}',
    "safety_checker/model.fp16.safetensors": b"\0" * 4096,
    "feature_extractor/preprocessor_config.json": b"{}",
    "unet/diffusion_pytorch_model.bin": b"\0" * 4096,
    "unet/diffusion_pytorch_model.non_ema.safetensors": b"\0" * 4096,
    "v1-5-pruned-emaonly.safetensors": b"\0" * 4096,
    "v1-5-pruned.ckpt": b"\0" * 4096,
    "README.md": b"# tiny test repository\n",
}


def tiny_sd_repo_files(*, inpaint: bool = False) -> dict[str, bytes]:
    """A tiny random-weight SD 1.5 repository (fp16 variants included) plus files never to fetch.

    Built once per test process (a few seconds on CPU) and shared read-only.
    """
    if inpaint not in _REPO_CACHE:
        import tempfile

        from tiny_sd import save_tiny_sd

        with tempfile.TemporaryDirectory() as tmp:
            folder = save_tiny_sd(Path(tmp) / "repo", inpaint=inpaint, fp16_variant=True)
            files = folder_files(folder)
        files.update(NEVER_FETCHED)
        _REPO_CACHE[inpaint] = files
    return dict(_REPO_CACHE[inpaint])


def tiny_taesd_repo_files() -> dict[str, bytes]:
    """A tiny random-weight AutoencoderTiny in diffusers format, like ``madebyollin/taesd``."""
    import tempfile

    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    )
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(Path(tmp) / "taesd", safe_serialization=True)
        files = folder_files(Path(tmp) / "taesd")
    files["taesd_encoder.pth"] = b"\0" * 1024  # the original's pickle files: never fetched
    return files


def without_safetensors(files: dict[str, bytes], parts: tuple[str, ...]) -> dict[str, bytes]:
    """``files`` with the weights of ``parts`` as pickled ``.bin`` only (fp32 and fp16 variant),
    as the pinned SD 1.5 inpainting commit publishes its VAE and UNet."""
    import io

    import torch
    from safetensors.torch import load

    out = dict(files)
    for part in parts:
        for name in [n for n in files if n.startswith(f"{part}/") and n.endswith(".safetensors")]:
            data = out.pop(name)
            if name in NEVER_FETCHED:  # placeholder bytes, not weights
                out[name.removesuffix(".safetensors") + ".bin"] = data
                continue
            buffer = io.BytesIO()
            torch.save(load(data), buffer)
            out[name.removesuffix(".safetensors") + ".bin"] = buffer.getvalue()
    return out
