#!/usr/bin/env bash
# Issue 16 on a CUDA machine, in one call: the CUDA tests, photo mode on the GPU, SD 1.5 VAE
# training and fine-tuning speed and memory, the preview, then (as time allows) the same VAE
# figures without checkpointing and with torch.compile. Each step has a hard timeout and its own
# log and JSON in the folder given as $1 (default $OUT); a failing step never stops the others.
# The whole run stays within ISSUE16_BUDGET seconds (default 225; device_session.sh gives it
# 250), the optional steps last.
#
#   bash benchmarks/gpu/run_issue16.sh "$OUT"           # on the GPU machine, from the repo root
#   ISSUE16_SMOKE=1 bash benchmarks/gpu/run_issue16.sh /tmp/i16   # tiny sizes: checks the code
#   ISSUE16_STEPS=train-compile ISSUE16_BUDGET=200 bash benchmarks/gpu/run_issue16.sh "$OUT"
#       (only the named steps: tests, photo, train, preview, train-nockpt, train-compile)
#
# Imports beyond torch, numpy, Pillow, safetensors, transformers and huggingface_hub: diffusers,
# platformdirs, kornia, filelock (spdesk), torchmetrics with lightning_utilities (the preview's
# figures), and for the tests step pytest with pluggy and iniconfig (run without pytest-timeout
# or pytest-qt: addopts are cleared). The first lines name any that is missing; a missing one
# fails only the steps that need it.
set -u
out="${1:-${OUT:-/tmp/issue16}}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 DIFFUSERS_VERBOSITY=error
export SPDESK_HOME="$out/spdesk-home"  # nothing written to a real home
smoke="${ISSUE16_SMOKE:-0}"
budget="${ISSUE16_BUDGET:-225}"
scale=1  # the steps' caps; a smoke run on a shared CPU is slower than the real run on a GPU
if [[ $smoke == 1 ]]; then
    budget="${ISSUE16_BUDGET:-3600}" scale=10
fi
start=$(date +%s)
summary=()

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout (CAP, or what is left of the
# budget), output in $out/NAME.log; records "NAME: rc=.. Ns" for the summary.
step() {
    local name=$1 cap=$2
    shift 2
    if [[ ,${ISSUE16_STEPS:-$name}, != *,$name,* ]]; then
        return
    fi
    cap=$((cap * scale))
    local left=$((budget - ($(date +%s) - start)))
    local limit=$((cap < left ? cap : left))
    if ((limit < 15)); then
        summary+=("$name: skipped (budget spent)")
        echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$out/run.log"
        return
    fi
    echo "=== $name (limit ${limit}s): $*" | tee -a "$out/run.log"
    local began=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local took=$(($(date +%s) - began))
    summary+=("$name: rc=$rc ${took}s$([[ $rc == 124 || $rc == 137 ]] && echo ' TIMED OUT')")
    echo "=== $name: rc=$rc in ${took}s" | tee -a "$out/run.log"
    tail -n 12 "$out/$name.log" | cut -c1-300
}

{
    date -u
    nvidia-smi -L 2>&1 || echo "nvidia-smi: not available"
    python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
        "available", torch.cuda.is_available(),
        torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
    nproc
    # What each step needs beyond the machine's own packages: a missing one is named here first.
    python - <<'EOF'
import importlib
needs = {
    "diffusers": "train, preview, tests", "torchmetrics": "preview (lightning_utilities too)",
    "kornia": "tests (training)", "platformdirs": "all spdesk", "filelock": "photo, tests",
    "pytest": "tests (pluggy, iniconfig too)", "spdesk.core.jobs": "photo",
}
missing = []
for name, used_by in needs.items():
    try:
        importlib.import_module(name)
    except Exception as error:  # an import error names the wheel to carry
        missing.append(f"{name} ({used_by}: {type(error).__name__}: {error})")
print("MISSING: " + "; ".join(missing) if missing else "all imports present")
EOF
} 2>&1 | tee "$out/machine.log"

if [[ $smoke == 1 ]]; then
    train_extra=(--smoke) preview_extra=(--smoke) photo_extra=(--smoke --workers 2)
    test_env=(env SPDESK_CUDA_TESTS_ON_CPU=1)
else
    train_extra=() preview_extra=(--size 512 --steps 25) photo_extra=(--count 1000 --workers 4,8)
    test_env=(env)
fi

step tests 60 "${test_env[@]}" python -m pytest -o addopts="" -p no:cacheprovider \
    --strict-markers -ra -q tests/test_cuda.py --junitxml="$out/tests.xml"
step photo 50 python benchmarks/bench_photo_gpu.py "${photo_extra[@]}" --json "$out/photo.json"
step train 60 python benchmarks/bench_train.py --cuda-speed --checkpointing --finetune-batch 8 \
    --stages none "${train_extra[@]}" --json "$out/train.json"
step preview 120 python benchmarks/bench_preview.py "${preview_extra[@]}" --json "$out/preview.json"
step train-nockpt 60 python benchmarks/bench_train.py --cuda-speed --finetune-batch 8 \
    --stages none "${train_extra[@]}" --json "$out/train-nockpt.json"
step train-compile 120 python benchmarks/bench_train.py --cuda-speed --compile --stages none \
    "${train_extra[@]}" --json "$out/train-compile.json"

# One line of figures (whatever the steps wrote).
python - "$out" <<'EOF' 2>&1 | tee "$out/summary.txt"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    try:
        return json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


parts = []
photo = load("photo")
if photo:
    gen = photo["generator"]
    parts.append(f"photo gen 512px {gen['step_s_512'] * 1000:.1f} ms/photo")
    for job in photo.get("jobs", []):
        parts.append(
            f"{photo['count']}-photo job {job['workers']}w {job['photos_per_s']:.0f}/s "
            f"(gen busy {job['generator_busy_share']:.0%}, floor {job['pillow_floor_photos_per_s']:.0f}/s)"
        )
for name in ("train", "train-nockpt", "train-compile"):
    figures = load(name)
    for row in figures.get("cuda_speed", []) + figures.get("cuda_speed_compiled", []):
        peak = row["peak_gib"]
        parts.append(
            f"{name} b{row['batch']}/m{row['micro']} {row['images_per_s']:.0f} img/s"
            + (f" {peak:.1f} GiB" if peak is not None else "")
        )
    for row in figures.get("finetune", []):
        parts.append(f"{name} ft{row['steps']} b{row['batch']} {row['s_per_photo']:.2f} s/photo")
preview = load("preview")
if "preview" in preview:
    p = preview["preview"]
    parts.append(f"preview {p['preview_s']:.2f} s {p['peak_mib'] / 1024:.1f} GiB")
print("SUMMARY: " + "; ".join(parts))
EOF
grep -h "MISSING\|all imports present" "$out/machine.log" | tee -a "$out/summary.txt"
printf '%s\n' "${summary[@]}" | tee -a "$out/summary.txt"
echo "total $(($(date +%s) - start))s; logs and JSON in $out" | tee -a "$out/summary.txt"
