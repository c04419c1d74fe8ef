#!/usr/bin/env bash
# Pack what benchmarks/gpu/run_ray_gpu.sh needs on a lent GPU machine, which has no ../shared, no
# Ray and no network, and takes at most 64 MiB with it: wheels for Python 3.12 of Ray (without
# its Java jar, dashboard front end, RLlib, Serve and LLM libraries, its binaries compressed with
# LZMA: about 30 MiB instead of 76) and of what else spdesk lacks there; the first PHOTOS
# ImageNet photos (40 by default, about 4 MiB) and TAESD: all in .devdata/ray (ignored by git,
# carried). Versions are this checkout's venv's. Run here, from the repository root, on a
# machine with pip and ../shared (a few minutes).
#
#   bash benchmarks/gpu/pack_ray.sh [SHARED] [PHOTOS]     # SHARED: ../shared by default
#   RAY_PACK_PYTHON=3.11 bash benchmarks/gpu/pack_ray.sh  # wheels for another Python (a check)
set -eu
shared=${1:-../shared}
photos=${2:-40}
python=${PYTHON:-.venv/bin/python}
data=.devdata/ray
wheels=$data/wheels
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
rm -rf "$data"
mkdir -p "$wheels" "$data/photos"
platform=(--no-deps --only-binary=:all: --python-version "${RAY_PACK_PYTHON:-3.12}" --implementation cp
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux_2_28_x86_64)
# Ray and what the machine lacks (its package list: ../.library/device/KINDS.md).
for name in ray jsonschema jsonschema-specifications referencing rpds-py platformdirs \
    diffusers importlib-metadata kornia kornia-rs; do
    version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))")
    "$python" -m pip download -q "${platform[@]}" -d "$download" "$name==$version"
done
mv "$download"/*.whl "$wheels"/
"$python" - "$wheels" <<'EOF'
"""Ray's wheel without what spdesk's jobs never load (RECORD lists what is left), its large
binaries compressed with LZMA (which pip's zipfile reads): 76 MiB become about 30."""
import sys, zipfile
from pathlib import Path

DROP = ("ray/jars/", "ray/dashboard/client/", "ray/rllib/", "ray/serve/", "ray/llm/")
(wheel,) = Path(sys.argv[1]).glob("ray-*.whl")
slim = wheel.with_suffix(".slim")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w") as out:
    for info in source.infolist():
        if info.filename.startswith(DROP):
            continue
        data = source.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(line for line in lines if not line.startswith(DROP)).encode()
        large = len(data) > 2**20
        info.compress_type = zipfile.ZIP_LZMA if large else zipfile.ZIP_DEFLATED
        out.writestr(info, data)
slim.replace(wheel)
EOF
find "$shared/data/imagenet-sample" -maxdepth 1 -iname '*.jpeg' | sort | head -n "$photos" |
    xargs -I{} cp {} "$data/photos/"
cp "$shared/models/taesd/taesd_f8e4m3.safetensors" "$data/"
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
packed=$(du -sb "$data" | cut -f1)
mib=$(( (tracked + packed) / 1048576 ))
echo "packed $(ls "$data/photos" | wc -l) photos and $(ls "$wheels" | wc -l) wheels: ${mib} MiB" \
    "with the checkout (at most 64 MiB travel; carry $data)"
(( mib < 63 )) || { echo "too large to travel: pack fewer photos"; exit 1; }
