"""Benchmark: the Ray engine against the local engine on the same photos and settings.

Not a test. Protects ``--count`` ImageNet samples from the shared data (1000 by default) in
``--mode`` (photo, the default of ``spdesk protect``, or universal) with the local engine (its
default workers) and with ``RayProtectJob`` on a local Ray instance with every CPU of this
machine (started as ``spdesk protect --engine ray`` starts one), then on a simulated two-node
cluster (``ray.cluster_utils.Cluster``, the same CPUs split over two raylets), and prints each
engine's wall time, throughput and the ratio to the local engine (Ray's overhead on one
machine; aim: at most 1.3x). Starting Ray is timed apart: a cluster is already running when a
job is sent to it. Every run writes into a fresh folder; the outputs of both engines are
compared byte for byte. ``--repeat N`` sends N jobs in a row to the one-node instance: later
jobs reuse its worker processes, as the jobs of one long-running process do (a new
``spdesk protect`` command is a new Ray driver and gets worker processes of its own).

The per-photo figures (CPU seconds per photo, driver planning per photo) feed the sizing of
docs/ray.md. ``--fine-tune STEPS --encoder SPEC`` measures per-photo fine-tuning instead: of each
photo's own perturbation with ``--mode photo`` (the default on a CUDA GPU), of the universal
pattern with ``--mode universal`` (GPU actors where the cluster has GPUs). ``--num-gpus N`` puts
them on N GPU actors (as ``spdesk protect --engine ray --num-gpus N``). For each Ray run it prints
how busy the workers kept their protector (the GPU, on GPU actors): the share of each worker's
time, from its first batch to its last, spent protecting or fine-tuning, the rest waiting for
input (reading and decoding photos, writing outputs, Ray's next batch).

    nice -n 19 python benchmarks/bench_ray.py --count 1000 --photos ../shared/data/imagenet-sample
    python benchmarks/bench_ray.py --count 1000 --photos ../shared/data/imagenet-sample \
        --fine-tune 8 --encoder ../shared/models/taesd/taesd_f8e4m3.safetensors --num-gpus 1 \
        --skip-two-nodes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from spdesk.core.distributed.ray_engine import (
    RayOptions,
    RayProtectJob,
    RayStats,
    local_instance_options,
)
from spdesk.core.jobs import JobReport, ProtectJob, ProtectSettings

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _photos(folder: Path, count: int) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))[:count]
    if len(photos) < count:
        raise SystemExit(f"only {len(photos)} photos in {folder}")
    for photo in photos:  # into the page cache: the engine timed first must not pay the disk
        photo.read_bytes()
    return photos


def _timed(job: ProtectJob) -> tuple[float, JobReport]:
    started = time.perf_counter()
    report = job.run()
    seconds = time.perf_counter() - started
    if report.failed or report.pending or len(report.done) == 0:
        raise SystemExit(f"the run did not protect every photo: {report.text()[:2000]}")
    return seconds, report


def _outputs(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*.protected.*")
        if p.is_file()
    }


def _same(outputs: dict[str, bytes], reference: dict[str, bytes], name: str) -> bool:
    """Whether ``outputs`` equal the local engine's; names what differs."""
    differ = sorted(
        k for k in outputs.keys() | reference.keys() if outputs.get(k) != reference.get(k)
    )
    if differ:
        print(f"{name}: {len(differ)} output(s) differ from the local engine's: {differ[:10]}")
    return not differ


def _figures(
    name: str, seconds: float, report: JobReport, local: float | None, stats: RayStats | None = None
) -> dict[str, Any]:
    photos = len(report.done)
    row: dict[str, Any] = {
        "engine": name,
        "photos": photos,
        "seconds": round(seconds, 2),
        "photos_per_s": round(photos / seconds, 2),
    }
    if local is not None:
        row["ratio_to_local"] = round(seconds / local, 3)
    if stats is not None and stats.busy_share is not None:
        row["workers_busy_share"] = round(stats.busy_share, 3)
    return row


def _busy_line(name: str, stats: RayStats, settings: ProtectSettings, gpus: int | None) -> str:
    """``ray, 1 node, photo-finetune: actors busy 93% of their time (idle 7% waiting for
    input); 1 GPU actor(s), --num-gpus 1``."""
    share = stats.busy_share
    busy = "no batch came back"
    if share is not None:
        busy = f"busy {share:.0%} of their time (idle {1 - share:.0%} waiting for input)"
    kind = "actors" if settings.mode != "universal" else "task workers"
    asked = "not given" if gpus is None else str(gpus)
    return (
        f"{name}, {settings.mode}: {kind} {busy}; {stats.workers} {stats.worker_kind} "
        f"worker(s), --num-gpus {asked}"
    )


def _ray_run(
    inputs: list[Path], out: Path, settings: ProtectSettings, options: RayOptions
) -> tuple[float, JobReport, RayProtectJob]:
    job = RayProtectJob(inputs, out, settings, options)
    seconds, report = _timed(job)
    return seconds, report, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--mode", choices=("photo", "universal"), default="photo")
    parser.add_argument(
        "--batch", type=int, default=RayOptions.batch_size, help="photos per Ray batch"
    )
    parser.add_argument(
        "--threads", type=int, default=RayOptions.threads, help="photos in flight per Ray worker"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="Ray workers (default: one per CPU)"
    )
    parser.add_argument("--fine-tune", type=int, default=None, metavar="STEPS")
    parser.add_argument("--encoder", default="taesd")
    parser.add_argument(
        "--num-gpus", type=int, default=None, help="GPU actors (default: every GPU of the machine)"
    )
    parser.add_argument("--skip-two-nodes", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Ray jobs in a row on the one-node instance"
    )
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    cores = _cores()
    inputs = _photos(args.photos, args.count)
    settings = ProtectSettings(mode=args.mode)
    if args.fine_tune is not None:  # photo mode fine-tuned (the GPU default), or the pattern
        mode = "photo-finetune" if args.mode == "photo" else "finetune"
        settings = ProtectSettings(mode=mode, finetune_steps=args.fine_tune, encoder=args.encoder)
    options = RayOptions(
        num_cpus=args.workers,
        num_gpus=args.num_gpus,
        batch_size=args.batch,
        threads=args.threads,
        progress=False,
    )
    busy: list[str] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        scratch = Path(tmp)
        local_s, local = _timed(ProtectJob(inputs, scratch / "local", settings))
        rows.append(_figures(f"local ({settings.workers} threads)", local_s, local, None))
        reference = _outputs(scratch / "local")

        started = time.perf_counter()
        # A new instance, even where a `ray start` left its address behind.
        instance = RayOptions(num_cpus=cores, num_gpus=args.num_gpus)
        ray.init(address="local", **local_instance_options(instance))
        ray_start = time.perf_counter() - started
        ray_s, report, job = _ray_run(inputs, scratch / "ray", settings, options)
        name = f"ray, 1 node ({job.stats.workers} workers)"
        rows.append(_figures(name, ray_s, report, local_s, job.stats))
        busy.append(_busy_line("ray, 1 node", job.stats, settings, args.num_gpus))
        same = _same(_outputs(scratch / "ray"), reference, "ray, 1 node")
        one_node = job.stats
        warm: list[float] = []
        for run in range(1, args.repeat):  # the same instance again: a cluster between jobs
            out = scratch / f"ray-again-{run}"
            seconds, again, job_again = _ray_run(inputs, out, settings, options)
            name = f"ray, 1 node, job {run + 1} on the instance"
            rows.append(_figures(name, seconds, again, local_s, job_again.stats))
            busy.append(_busy_line(name, job_again.stats, settings, args.num_gpus))
            same = _same(_outputs(out), reference, f"ray, job {run + 1}") and same
            warm.append(round(seconds, 2))
        ray.shutdown()

        two_nodes: dict[str, Any] = {}
        if not args.skip_two_nodes:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": max(1, cores // 2), "include_dashboard": False,
                                "object_store_memory": 100 * 1024**2},
            )  # fmt: skip
            cluster.add_node(num_cpus=max(1, cores - cores // 2), object_store_memory=100 * 1024**2)
            ray.init(address=cluster.address, logging_level="ERROR")
            two_s, two, job2 = _ray_run(inputs, scratch / "ray2", settings, options)
            name = f"ray, 2 nodes ({job2.stats.workers} workers)"
            rows.append(_figures(name, two_s, two, local_s, job2.stats))
            busy.append(_busy_line("ray, 2 nodes", job2.stats, settings, args.num_gpus))
            same = _same(_outputs(scratch / "ray2"), reference, "ray, 2 nodes") and same
            two_nodes = {"seconds": round(two_s, 2), "vs_one_node": round(two_s / ray_s, 3)}
            ray.shutdown()
            cluster.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)

    photos = len(local.done)
    share = one_node.busy_share
    summary = {
        "photos": photos,
        "cores": cores,
        "mode": settings.mode,
        "num_gpus": args.num_gpus,
        "ray_worker_kind": one_node.worker_kind,
        "ray_workers_busy_share": None if share is None else round(share, 3),
        "ray_start_s": round(ray_start, 2),
        "ray_plan_s_per_photo": round(one_node.plan_seconds / photos, 5),
        "local_cpu_s_per_photo": round(local_s * cores / photos, 4),
        "ray_cpu_s_per_photo": round(ray_s * cores / photos, 4),
        "ray_over_local": round(ray_s / local_s, 3),
        "ray_first_batch_s": round(one_node.first_batch_seconds or 0.0, 2),
        "ray_later_jobs_s": warm,
        "ray_later_jobs_over_local": [round(w / local_s, 3) for w in warm],
        "two_nodes": two_nodes,
        "outputs_identical": same,
    }
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(summary))
    print("\n" + "\n".join(busy))
    print(
        f"\n{photos} photos, {cores} cores: local {local_s:.1f} s, Ray {ray_s:.1f} s "
        f"({ray_s / local_s:.2f}x local; Ray itself started in {ray_start:.1f} s)"
        + (f", two nodes {two_nodes['seconds']} s" if two_nodes else "")
        + f"; outputs identical: {same}"
    )


if __name__ == "__main__":
    main()
