"""A local S3 for tests: moto's server on 127.0.0.1, in a thread (no network, no account).

:func:`s3_server` starts it and points fsspec's ``s3://`` (s3fs) at it for this process, as
fsspec's configuration (``fsspec.config.conf["s3"]``): a file system made from an ``s3://`` URL
then carries the endpoint and the dummy keys in its arguments, which travel with it to Ray's
worker processes. Skipped with a clear reason when moto or s3fs is not installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_buckets = itertools.count()


@contextmanager
def s3_server() -> Iterator[str]:
    """Run a local S3 and configure fsspec's ``s3://`` for it; yields its endpoint URL."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (part of the test extra)")
    server_module = pytest.importorskip(
        "moto.server", reason='moto is not installed (pip install "moto[server]", test extra)'
    )
    import fsspec.config

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    options: dict[str, Any] = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    previous = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = options
    try:
        yield endpoint
    finally:
        if previous is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = previous
        server.stop()


def new_bucket() -> str:
    """A fresh, empty bucket on the configured local S3; returns its name."""
    import fsspec

    fs = fsspec.filesystem("s3")
    name = f"spdesk-test-{next(_buckets)}"
    fs.call_s3("create_bucket", Bucket=name)
    fs.invalidate_cache()
    return name
