#!/usr/bin/env bash
# Issue 15 on a lent CUDA machine, in one call: the whole protection table for photo fine-tuning
# (visibility, strength at 256 and 512 px, JPEG / resize / blur / averaging-attack robustness on
# 100 photos, TAEF2 / TAESana transfer, GPU seconds per photo), which takes a CPU-hour and more on
# 2 cores. The benchmarks run side by side (the GPU is mostly idle; the CPU side of the
# assessment is what takes time), each under a hard timeout, each writing its log and JSON to the
# folder given as $1 (default $OUT). ISSUE15_PLAN=tables (default):
#   table8   bench_protection.py: photo mode, universal and photo fine-tuning 8 steps, one table
#   table32  bench_protection.py: photo fine-tuning 32 steps
#   ceiling  bench_budget_ceiling.py: 32 steps inside the bundled budget and looser ones
# ISSUE15_PLAN=variants: fine-tuning without the JPEG round trip in the loss (the product has it
# since 2026-12-01) or with TAEF2 too (8 and 16 steps), then the GPU seconds per photo of each
# mode with nothing else running.
# ISSUE15_PLAN=speed: the GPU default as a user runs it, `spdesk protect --fine-tune 8` on the
# packed photos, one photo per pass and then 8 (photos/s of each, and their ratio), with the
# GPU alone; then the same for photo mode.
# The machine has no ../shared: benchmarks/gpu/pack_bench_photos.py packs the photos these measure
# and the three encoders into .devdata/bench (carried); wheels of what the machine lacks travel in
# .whl (see ../.library/device/README.md).
#
#   bash benchmarks/gpu/run_issue15.sh "$OUT"                     # on the GPU machine
#   ISSUE15_SECONDS=60 ISSUE15_MEASURE=2 ISSUE15_ATTACK=6 bash benchmarks/gpu/run_issue15.sh /tmp/i15
#       (a smoke run of the same commands on any machine)
set -u
out="${1:-${OUT:?OUT}}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
if [[ -d .whl ]] && ! python3 -c "import diffusers, kornia, ssimulacra2, flip_evaluator" 2>/dev/null
then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site
fi
[[ -e spdesk/resources ]] || ln -sfn ../resources spdesk/resources  # the package-dir mapping
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd):$(pwd)/benchmarks"
export PYTHONUNBUFFERED=1 SPDESK_HOME="${SPDESK_HOME:-/tmp/spdesk-home-i15}"
shared="${ISSUE15_SHARED:-.devdata/bench}"
seconds="${ISSUE15_SECONDS:-500}"
device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
sizes=(--measure "${ISSUE15_MEASURE:-24}" --attack-photos "${ISSUE15_ATTACK:-100}")
limit=(--time-limit $(( seconds - 90 )))  # then the table is printed with the photos measured
common=(--shared "$shared" --device "$device" "${sizes[@]}" "${limit[@]}" --speed-photos 10)
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0) \
    if torch.cuda.is_available() else 'no GPU')"

run() {  # NAME COMMAND...: in the background, hard timeout, output in $out/NAME.log
    local name=$1; shift
    OMP_NUM_THREADS=5 timeout "$seconds" "$@" >"$out/$name.log" 2>&1 &
}
plan="${ISSUE15_PLAN:-tables}"
if [[ $plan == speed ]]; then
    taesd="$shared/models/taesd/taesd_f8e4m3.safetensors"
    timed() {  # NAME ARGS...: spdesk protect on the packed photos, photos/s on one line
        local name=$1; shift
        rm -rf "/tmp/i15-$name"
        local started; started=$(date +%s.%N)
        timeout $(( seconds < 180 ? seconds : 180 )) python3 -m spdesk protect "$shared/data/imagenet-sample" \
            --out "/tmp/i15-$name" --device "$device" --json "$@" >"$out/$name.json" 2>"$out/$name.log"
        local status=$? took; took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
        local count; count=$(find "/tmp/i15-$name" -name '*.protected.*' | wc -l)
        echo "$name: exit $status, $count photos in $took s ($(python3 -c \
            "print(f'{$count / max($took, 1e-9):.1f}')") photos/s, model loading included)"
    }
    timed photo --mode photo
    timed ft8-batch1 --fine-tune 8 --encoder "$taesd" --fine-tune-batch 1
    timed ft8-batch8 --fine-tune 8 --encoder "$taesd" --fine-tune-batch 8
    exit 0
fi
bench=(python3 benchmarks/bench_protection.py "${common[@]}")
if [[ $plan == tables ]]; then  # the first call (2026-11-30): product modes, 8 and 32 steps
    run table8 "${bench[@]}" --modes photo,universal --fine-tune 8 --json "$out/table8.json" \
        --chart "$out/pareto8.png"
    run table32 "${bench[@]}" --modes "" --fine-tune 32 --json "$out/table32.json"
    run ceiling python3 benchmarks/bench_budget_ceiling.py --shared "$shared" \
        --device "$device" "${sizes[@]}" "${limit[@]}" --steps 32
    names=(table8 table32 ceiling)
else  # variants: loss variants of fine-tuning, then photo modes' GPU time with the GPU alone
    run variants8 "${bench[@]}" --modes "" --fine-tune 8 --tuner-variants nojpeg,ens \
        --json "$out/variants8.json"
    run variants16 "${bench[@]}" --modes "" --fine-tune 16 --tuner-variants nojpeg \
        --json "$out/variants16.json"
    names=(variants8 variants16)
fi
wait
if [[ $plan != tables ]]; then
    OMP_NUM_THREADS=8 timeout 120 python3 benchmarks/bench_protection.py --shared "$shared" \
        --measure 20 --attack-photos 100 --speed-photos 20 --modes photo,universal \
        --fine-tune 8 --tuner-variants nojpeg --speed-only >"$out/speed.log" 2>&1
    names+=(speed)
fi
for name in "${names[@]}"; do echo "== $name"; tail -n 40 "$out/$name.log"; done
