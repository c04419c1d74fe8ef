#!/usr/bin/env bash
# Train protection-generator variants side by side on one GPU, time-boxed (issue 15).
#
#   bash benchmarks/gpu/train_generators.sh OUT_DIR MINUTES PHOTOS ENCODER_DIR
#
# PHOTOS: the training photos (benchmarks/gpu/pack_generator_photos.py packs the 700 training
# photos of ../shared/data/imagenet-sample small enough to travel); ENCODER_DIR holds
# taesd_f8e4m3.safetensors and taef2_encoder.safetensors. Each variant runs as its own process
# (the networks are small: one alone leaves most of the GPU idle) and writes
# OUT_DIR/<variant>.safetensors and OUT_DIR/<variant>.log. The variants differ only in what the
# comment on each line says; everything else is the bundled generator's stage-2 shaping.
set -u
out=${1:?OUT_DIR}; minutes=${2:?MINUTES}; photos=${3:?PHOTOS}; enc=${4:?ENCODER_DIR}
mkdir -p "$out"
taesd="$enc/taesd_f8e4m3.safetensors"; taef2="$enc/taef2_encoder.safetensors"
common=(--steps 100000 --time-limit "$minutes" --size 256 --batch 16 --lr 2e-3
        --visibility 0.3 --floor 0.2 --colour 0.1 --dark-ref 0.25 --jpeg 0.5 --jpeg-quality 50
        --device cuda --json)
train() {  # name, then extra arguments
  local name=$1; shift
  OMP_NUM_THREADS=2 timeout $(( ${minutes%.*} * 60 + 240 )) \
    "${PYTHON:-python3}" -m spdesk train-generator "$photos" --out "$out/$name.safetensors" "${common[@]}" "$@" \
    >"$out/$name.log" 2>&1 &
}
ens="$taesd,$taef2"
train w48-ens --encoder "$ens" --width 48 --blocks 3 --seed 11        # the bundled shape
train w64-ens --encoder "$ens" --width 64 --blocks 4 --seed 12        # wider and deeper
train w96-ens --encoder "$ens" --width 96 --blocks 4 --seed 13        # widest (CPU cost 0.15 s)
train w64-taesd --encoder "$taesd" --width 64 --blocks 4 --seed 14    # TAESD alone
train w64-ens-ssim --encoder "$ens" --width 64 --blocks 4 --ssim 2 --seed 15  # + SSIM term
train w64-ens-scale --encoder "$ens" --width 64 --blocks 4 --editor-scale 0.5 1.6 --seed 16
wait
for log in "$out"/*.log; do echo "== $log"; tail -c 600 "$log"; echo; done
