#!/usr/bin/env bash
# The device check (bench/device_check/README.md).
#
#   bash bench/device_check/run.sh                 # one H100/H200, no network, <= 8 minutes
#   bash bench/device_check/run.sh --cpu           # CI-sized on the CPU (tests/test_device_check.py)
#   bash bench/device_check/run.sh --fetch-wheels  # on a machine with PyPI: the wheels to carry
#
# Writes device_check.json + device_check.md into $OUT (the device machine's returned folder)
# when it is set, else bench/out/device_check/ (or --out DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wheels="$here/wheels"

if [ "${1:-}" = "--fetch-wheels" ]; then
  # What the GPU machine may lack, as wheels for its Python (default: this one's): bitsandbytes
  # (41 MiB, any Python) for QLoRA, and snakemake with its dependencies except its 16 MiB ILP
  # solver (pulp; the section runs `--scheduler greedy`) for the grid (12 MiB). About 53 MiB.
  pyver="${2:-$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  platforms=()
  for p in manylinux_2_28 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_12 manylinux2010 manylinux_2_5 \
    manylinux1; do platforms+=(--platform "${p}_x86_64"); done
  mkdir -p "$wheels"
  python -m pip download --quiet --no-deps --only-binary=:all: "${platforms[@]}" --python-version "$pyver" \
    -d "$wheels" bitsandbytes==0.50.2
  python -m pip wheel --quiet --no-deps -w "$wheels" connection_pool==0.0.3 # published as a source archive only
  python -m pip download --quiet --only-binary=:all: "${platforms[@]}" --python-version "$pyver" \
    --find-links "$wheels" -d "$wheels" snakemake==9.27.1
  rm -f "$wheels"/pulp-*.whl
  du -sh "$wheels"
  exit 0
fi

mode=()
out="${OUT:-$root/bench/out/device_check}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=(--cpu); shift ;;
    --out) out="$2"; shift 2 ;;
    *) mode+=("$1"); shift ;;
  esac
done

# Carried wheels: install, offline and without dependency resolution, only the distributions this
# machine lacks (never a second version of anything it has, its torch stack included).
carried=""
if [ -d "$wheels" ] && compgen -G "$wheels/*.whl" > /dev/null; then
  missing=$(python - "$wheels" << 'PY'
import importlib.metadata as md, pathlib, re, sys
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", whl.name.split("-")[0]).lower()
    try:
        md.version(name)
    except md.PackageNotFoundError:
        print(whl)
PY
  )
  if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # one wheel path per word
    if python -m pip install --quiet --no-index --no-deps $missing; then
      carried=$(for w in $missing; do basename "$w" | cut -d- -f1; done | tr '\n' ' ')
    else
      echo "device check: the carried wheels do not install here (another Python? see README)" >&2
    fi
  fi
fi
export DEVICE_CHECK_CARRIED="${carried% }"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python "$here/check.py" "${mode[@]}" --out "$out"
