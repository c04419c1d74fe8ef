#!/usr/bin/env bash
# The GPU default's whole job on a lent CUDA machine, in one call: photo fine-tuning (8 steps
# against TAESD, the JPEG term on) over the packed photos, batches of 8 in name order and sorted
# largest first (photos of one size side by side), then one photo a pass; seconds a photo of
# each (benchmarks/bench_job_order.py). Batched fine-tuning's speed-up was never measured on a
# GPU.
# Carry .whl and .devdata/bench124 (pack_bench_photos.py ../shared .devdata/bench124 --photos 124);
# everything comes back as $OUT/job_order.log and $OUT/job_order_batchN.json.
#
#   bash benchmarks/gpu/job_order_session.sh "$OUT"                                  # GPU machine
#   DEVICE=cpu STEPS=1 PHOTOS=3 bash benchmarks/gpu/job_order_session.sh "$(mktemp -d)"  # smoke run
set -u
out="${1:-${OUT:?OUT}}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
{
  source benchmarks/gpu/env.sh  # the carried wheels, the resources link, PYTHONPATH
  export SPDESK_HOME=${SPDESK_HOME:-/tmp/spdesk-home-jo}
  photos=${PHOTOS_DIR:-.devdata/bench124/data/imagenet-sample}
  for batch in 8 1; do
    echo "== batches of $batch ($SECONDS s in)"
    timeout 400 python3 benchmarks/bench_job_order.py --photos "$photos" --repeat 0 \
      --finetune "${STEPS:-8}" --finetune-photos "${PHOTOS:-124}" --batch "$batch" \
      --device "${DEVICE:-cuda}" --json "$out/job_order_batch$batch.json"
  done
  echo "== done after $SECONDS s"
} 2>&1 | tee "$out/job_order.log"
