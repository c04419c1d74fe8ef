#!/usr/bin/env bash
# Issue 15 on a lent CUDA machine, in one call: train generator variants for GEN_MINUTES
# (benchmarks/gpu/train_generators.sh), then time the photo-specific default on the GPU
# (bench_protection.py --speed-only: seconds per ImageNet photo and per 24 MP photo, protect step
# alone). Everything comes back as $OUT/session.log and $OUT/results.tgz (the trained files, their
# logs, nvidia-smi samples). The machine has torch but neither diffusers, kornia nor platformdirs,
# and no ../shared: their wheels travel in .whl, the packed photos and encoders in .devdata
# (benchmarks/gpu/pack_generator_photos.py and pack_bench_photos.py; both folders carried).
#
#   GEN_MINUTES=6 bash benchmarks/gpu/issue15_session.sh "$OUT"            # on the GPU machine
#   TRAIN_DEVICE=cpu GEN_MINUTES=0.1 bash benchmarks/gpu/issue15_session.sh /tmp/i15   # smoke run
set -u
out="${1:-${OUT:?OUT}}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
started=$(date +%s)
res=$(mktemp -d)
device=${TRAIN_DEVICE:-cuda}
{
  source benchmarks/gpu/env.sh  # the carried wheels, the resources link, PYTHONPATH
  export SPDESK_HOME=${SPDESK_HOME:-/tmp/spdesk-home-i15}
  python3 -c "
import torch, diffusers, kornia, spdesk.cli
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
print('torch', torch.__version__, 'cuda', torch.version.cuda, gpu, 'diffusers', diffusers.__version__,
      'kornia', kornia.__version__)" || exit 4
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 20 >"$res/smi.csv" 2>&1 &
    sampler=$!
  fi
  echo "== train generators ($(( $(date +%s) - started )) s in)"
  bash benchmarks/gpu/train_generators.sh "$res/gen" "${GEN_MINUTES:-6}" .devdata/photos \
    .devdata/bench/models
  echo "== photo mode's speed, the GPU alone ($(( $(date +%s) - started )) s in)"
  OMP_NUM_THREADS=8 timeout 150 python3 benchmarks/bench_protection.py --shared .devdata/bench \
    --device "$device" --modes photo --speed-only --speed-photos 20 --measure 20 --attack-photos 0
  echo "== done after $(( $(date +%s) - started )) s"
  [[ -n ${sampler:-} ]] && kill "$sampler"
} 2>&1 | tee "$res/session.log"
cp "$res/session.log" "$out/session.log"
tar czf "$out/results.tgz" -C "$res" .
