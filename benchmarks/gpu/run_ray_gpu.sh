#!/usr/bin/env bash
# Issue 13's GPU check in one call on a lent CUDA machine (about 3 minutes): does the GPU wait
# for decoding? benchmarks/bench_ray.py fine-tunes each photo's perturbation (photo mode, 8 steps,
# TAESD) with the local engine, then with Ray on one GPU actor (--num-gpus 1), and prints how busy
# the actor kept the GPU ("actors busy X% of their time (idle Y% waiting for input)"), the
# throughput of both engines and whether their outputs are identical. Then, as time allows, the
# same for photo mode (the generator alone). Logs in the folder given as $1 (default $OUT).
#
# The machine has no ../shared, no Ray and no network: first, here, `bash
# benchmarks/gpu/pack_ray.sh` (wheels, photos and TAESD in .devdata/ray), then run this with
# carry [".devdata/ray"] and a timeout_s of 300:
#
#   bash benchmarks/gpu/run_ray_gpu.sh "$OUT"
#   RAY_GPU_COUNT=4 RAY_GPU_STEPS=1 RAY_GPU_GPUS=0 bash benchmarks/gpu/run_ray_gpu.sh /tmp/rg
#       (a smoke run of the same commands on a machine without a GPU)
#
# The carried photos are repeated under other names up to RAY_GPU_COUNT (300): each copy costs
# the same to decode and to fine-tune. With ../shared, the same measure is
#   python benchmarks/bench_ray.py --count 1000 --photos ../shared/data/imagenet-sample \
#       --fine-tune 8 --encoder ../shared/models/taesd/taesd_f8e4m3.safetensors --num-gpus 1 \
#       --skip-two-nodes
set -u
out="${1:-${OUT:?OUT}}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
data=.devdata/ray
if ! python3 -c "import ray, platformdirs, kornia, diffusers" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$data"/wheels/*.whl || exit 3
    export PYTHONPATH=/tmp/site
fi
[[ -e spdesk/resources ]] || ln -sfn ../resources spdesk/resources  # the package-dir mapping
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 SPDESK_HOME=/tmp/spdesk-home-ray
count=${RAY_GPU_COUNT:-300}
photos=/tmp/ray-gpu-photos
python3 - "$data/photos" "$photos" "$count" <<'EOF'
"""The carried photos, copied under other names until there are COUNT."""
import itertools, shutil, sys
from pathlib import Path

source, target, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
shutil.rmtree(target, ignore_errors=True)
target.mkdir(parents=True)
carried = sorted(source.glob("*.JPEG"))
for index, photo in zip(range(count), itertools.cycle(carried)):
    shutil.copyfile(photo, target / f"{index:05d}_{photo.name}")
print(f"{count} photos from {len(carried)} carried")
EOF
nvidia-smi -L 2>&1 | head -2
python3 -c "import torch, ray; print('torch', torch.__version__, 'ray', ray.__version__,
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
bench=(python3 benchmarks/bench_ray.py --count "$count" --photos "$photos" --skip-two-nodes
    --num-gpus "${RAY_GPU_GPUS:-1}")
steps=${RAY_GPU_STEPS:-8}
echo "== photo fine-tuning, $steps steps: ${bench[*]}"
timeout --kill-after=10 "${RAY_GPU_SECONDS:-170}" "${bench[@]}" --fine-tune "$steps" \
    --encoder "$data/taesd_f8e4m3.safetensors" >"$out/ray_gpu_finetune.log" 2>&1
echo "rc=$?"
grep -v "^{" "$out/ray_gpu_finetune.log" | tail -n 8 | cut -c1-400
grep "^{" "$out/ray_gpu_finetune.log" | cut -c1-600
echo "== photo mode"
timeout --kill-after=10 "${RAY_GPU_PHOTO_SECONDS:-60}" "${bench[@]}" --mode photo \
    >"$out/ray_gpu_photo.log" 2>&1
echo "rc=$?"
tail -n 5 "$out/ray_gpu_photo.log" | cut -c1-600
