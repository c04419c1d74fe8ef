"""The manifest keeps the proof (name, size, sha256) of every output spdesk wrote for a photo,
not only of its latest line's: an "overwrite" may replace only spdesk's own files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spdesk.core.manifest import DONE, FAILED, MANIFEST_NAME, Manifest, merge_entries


def _output(root: Path, name: str, data: bytes) -> dict[str, object]:
    (root / name).write_bytes(data)
    return {
        "output": name,
        "output_size": len(data),
        "output_sha256": hashlib.sha256(data).hexdigest(),
    }


def _line(source: str, status: str, time: float, **fields: object) -> str:
    return json.dumps({"source": source, "status": status, "time": time, **fields}) + "\n"


def test_a_manifest_of_an_older_version_proves_every_output_its_lines_name(
    tmp_path: Path,
) -> None:
    """Lines written before the proofs were carried over (one per event, not compacted)."""
    first = _output(tmp_path, "a.protected.jpg", b"first")
    second = _output(tmp_path, "a.protected-2.jpg", b"second")
    (tmp_path / MANIFEST_NAME).write_text(
        _line("/p/a.jpg", DONE, 1.0, settings="s1", **first)
        + _line("/p/a.jpg", DONE, 2.0, settings="s2", **second)
        + _line("/p/a.jpg", FAILED, 3.0, settings="s3", reason="cut short"),
        encoding="utf-8",
    )
    with Manifest(tmp_path) as manifest:
        assert manifest.wrote(tmp_path / "a.protected.jpg")
        assert manifest.wrote(tmp_path / "a.protected-2.jpg")
        assert manifest.entries[manifest.source_id("/p/a.jpg")]["status"] == FAILED
    with Manifest(tmp_path) as compacted:  # what the first one compacted into
        assert compacted.wrote(tmp_path / "a.protected.jpg")
        assert compacted.wrote(tmp_path / "a.protected-2.jpg")
    (tmp_path / "a.protected.jpg").write_bytes(b"edited since")
    with Manifest(tmp_path) as manifest:
        assert not manifest.wrote(tmp_path / "a.protected.jpg")


def test_a_merged_shard_line_keeps_the_proof_of_the_output_it_replaces(tmp_path: Path) -> None:
    first = _output(tmp_path, "a.protected.jpg", b"first")
    second = _output(tmp_path, "a.protected-2.jpg", b"second")
    entries = {"/p/a.jpg": json.loads(_line("/p/a.jpg", DONE, 1.0, **first))}
    merge_entries(entries, [json.loads(_line("/p/a.jpg", DONE, 2.0, **second))])
    (tmp_path / MANIFEST_NAME).write_text(
        "".join(json.dumps(e) + "\n" for e in entries.values()), encoding="utf-8"
    )
    with Manifest(tmp_path) as manifest:
        assert manifest.wrote(tmp_path / "a.protected.jpg")
        assert manifest.kept_outputs(["/p/a.jpg"]) == {
            tmp_path / "a.protected-2.jpg": "/p/a.jpg",
            tmp_path / "a.protected.jpg": "/p/a.jpg",
        }
