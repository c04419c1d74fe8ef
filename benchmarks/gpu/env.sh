# Sourced from the repository root by the GPU session scripts. A lent machine has torch but not
# diffusers, kornia or platformdirs: their wheels travel in .whl and are installed aside; then
# the package's resources link (its package-dir mapping) and the import path.
if [[ -d .whl ]] && ! python3 -c "import diffusers, kornia, platformdirs" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
[[ -e spdesk/resources ]] || ln -sfn ../resources spdesk/resources
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd):$(pwd)/benchmarks"
export PYTHONUNBUFFERED=1
