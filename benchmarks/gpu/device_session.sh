#!/usr/bin/env bash
# One call on a lent GPU machine (see ../.library/device): train protection-generator variants
# (issue 15), then run the CUDA speed/memory checks (issue 16). Everything ends up in
# $OUT/results.tgz and $OUT/session.log. The machine has torch and transformers but neither
# diffusers, kornia nor platformdirs, and no network: their wheels travel in .whl/ (carried,
# ignored by git), the packed training photos and encoder weights in .devdata/ (see
# benchmarks/gpu/pack_generator_photos.py).
#
#   GEN_MINUTES=4.8 ISSUE16_SECONDS=250 bash benchmarks/gpu/device_session.sh
set -u
started=$(date +%s)
out=${OUT:?OUT}; res=/tmp/spdesk-results; mkdir -p "$res"
elapsed() { echo $(( $(date +%s) - started )); }
{
  if [ -z "${SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 3; }
    export PYTHONPATH=/tmp/site:$PWD
  fi
  export PYTHONUNBUFFERED=1
  if ! command -v python >/dev/null; then  # the scripts say "python"; the machine has python3
    mkdir -p /tmp/bin && ln -sf "$(command -v python3)" /tmp/bin/python && export PATH=/tmp/bin:$PATH
  fi
  nvidia-smi -L
  "${PYTHON:-python3}" -c "
import torch, diffusers, kornia, platformdirs, transformers, spdesk.cli
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
print('torch', torch.__version__, 'cuda', torch.version.cuda, gpu, 'diffusers',
      diffusers.__version__, 'transformers', transformers.__version__)" || exit 4
  echo "== train generators ($(elapsed) s in)"
  bash benchmarks/gpu/train_generators.sh "$res/gen" "${GEN_MINUTES:-4.5}" .devdata/photos .devdata/enc
  echo "== issue 16 ($(elapsed) s in)"
  if [ -f benchmarks/gpu/run_issue16.sh ]; then
    ISSUE16_BUDGET=$(( ${ISSUE16_SECONDS:-250} - 20 )) timeout "${ISSUE16_SECONDS:-250}" \
      bash benchmarks/gpu/run_issue16.sh "$res/issue16"
  fi
  echo "== done after $(elapsed) s"
} 2>&1 | tee "$res/session.log"
cp "$res/session.log" "$out/session.log"
tar czf "$out/results.tgz" -C "$res" .
