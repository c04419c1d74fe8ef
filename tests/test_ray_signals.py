"""A Ray job stops cleanly on the signals that stop a whole process group.

`kill -TERM -PGID` is how a service manager, a CI cancel or `timeout` stop a command: every
process of the group gets the signal. The Ray instance spdesk starts for the job must not be
among them, or the driver's clean stop (summary, merged manifest, no temporary file) waits on
a dead cluster. Each test starts its own Ray instance in a driver process of its own.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spdesk.core.files import TEMP_SUFFIX
from spdesk.core.manifest import SHARDS_FOLDER
from tests import protect_samples as samples

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="Ray is not installed (spdesk's [ray] extra, part of the test extra)",
    ),
    pytest.mark.slow,  # a Ray instance of its own: half a minute on 2 cores
]

REPO = Path(__file__).resolve().parents[1]

# `spdesk protect --engine ray` whose workers take 0.5 s more per output, so that the signal
# comes while the job runs (the store's class is made here: Ray sends it to the workers by value).
_SLOW_CLI = """
import os, sys, time
from spdesk.cli import main
from spdesk.core.distributed import ray_engine

driver = os.getpid()
made = ray_engine.RayProtectJob.__init__

def slow_outputs(job, *args, **kwargs):
    made(job, *args, **kwargs)
    base = type(job.output_store)

    class Slow(base):
        def publish(self, temp, target, **how):
            if os.getpid() != driver:
                time.sleep(0.5)
            base.publish(self, temp, target, **how)

    slow = Slow.__new__(Slow)
    slow.__dict__.update(job.output_store.__dict__)
    job.output_store = slow

ray_engine.RayProtectJob.__init__ = slow_outputs
sys.exit(main(sys.argv[1:]))
"""


def _first_output(out: Path, driver: subprocess.Popen[str], seconds: float) -> None:
    """Wait until a worker published its first photo (Ray is up, the job under way)."""
    deadline = time.monotonic() + seconds
    while next(out.rglob("*.protected.png"), None) is None:
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no photo protected in time"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["photo", "universal"], ids=["actors", "tasks"])
def test_sigterm_to_the_process_group_stops_a_ray_job_cleanly(tmp_path: Path, mode: str) -> None:
    """One SIGTERM to the whole group: the Ray instance the job started lives on until the
    driver has stopped the workers, so the job ends as after Ctrl+C: within seconds, exit 130,
    the summary, every finished photo in the manifest, no shard nor temporary file left. (The
    instance's GCS server and raylet died with the group: the driver waited 60 s for them,
    then died with exit 1, its work unmerged; tasks, their raylet gone, never saw the stop.)"""
    if mode == "photo":
        pytest.importorskip("torch")
    inputs, out = tmp_path / "in", tmp_path / "out"
    for i in range(16):
        samples.photo(inputs / f"{i:02d}.png", 40, 24)
    command = [sys.executable, "-c", _SLOW_CLI, "protect", str(inputs), "--out", str(out)]
    command += ["--engine", "ray", "--num-cpus", "1", "--mode", mode]
    command += ["--working-size", "16"]
    if mode == "universal":
        command += ["--perturbation", str(samples.perturbation_file(tmp_path))]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SPDESK_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("RAY_ADDRESS", None)  # the job starts a Ray instance of its own
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own group, as a service's or a CI job's
    )  # fmt: skip
    try:
        _first_output(out, driver, seconds=180)
        os.killpg(driver.pid, signal.SIGTERM)
        signalled = time.monotonic()
        _stdout, stderr = driver.communicate(timeout=120)
        seconds = time.monotonic() - signalled
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 130, stderr[-3000:]
    assert seconds < 20, f"stopped {seconds:.0f} s after the signal"
    assert "Cancelled: run the same command again to finish the rest." in stderr
    assert " protected, " in stderr and " not done in " in stderr  # the summary
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    assert not (out / SHARDS_FOLDER).exists()  # merged into the manifest
    keys_of_the_driver = pytest.MonkeyPatch.context()
    with keys_of_the_driver as patch:  # the ids come from the driver's key, in its home
        patch.setenv("SPDESK_HOME", str(tmp_path / "home"))
        entries = samples.recorded(out, sorted(inputs.iterdir()))
    done = sorted(name for name, e in entries.items() if e["status"] == "done")
    on_disk = sorted(p.name.replace(".protected", "") for p in out.glob("*.protected.png"))
    assert done == on_disk and 1 <= len(done) < 16
