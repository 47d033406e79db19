#!/usr/bin/env bash
# The GPU checks in one prepared run, on a machine with a CUDA GPU, in well under 8 minutes:
#
#     bash bench/gpu.sh [OUT_DIR]        # figures in OUT_DIR/gpu.md (default: $OUT, else bench/gpu-out)
#
# 1. dependencies: CuPy (the `gpu` extra) unless the machine has one; the project's other
#    requirements that are missing, from wheels in bench/wheels/ when the machine is offline
#    (`pip download --only-binary :all: -d bench/wheels pot array-api-compat` on a networked one);
# 2. the GPU tests for real (PHYSFIELD_TEST_GPU=1: no CUDA simulator): the CuPy backend against the
#    NumPy reference and the per-pair brute force, the CUDA kernels against the CPU kernels;
# 3. the direction benchmark with the CuPy rows (bench/bench_direction.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/gpu-out}}
mkdir -p "$out"
report="$out/gpu.md"
py=${PYTHON:-python3}

"$py" -c "import cupy" 2>/dev/null || "$py" -m pip install --quiet "cupy-cuda12x>=13"
missing=$("$py" - <<'PY'
import importlib.util
need = {"ot": "pot", "array_api_compat": "array-api-compat", "numba": "numba", "h5py": "h5py", "click": "click",
        "tqdm": "tqdm", "threadpoolctl": "threadpoolctl", "hypothesis": "hypothesis", "pytest": "pytest",
        "sklearn": "scikit-learn", "matplotlib": "matplotlib", "scipy": "scipy"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
    "$py" -m pip install --quiet --no-index --find-links bench/wheels $missing || "$py" -m pip install --quiet $missing
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PHYSFIELD_TEST_GPU=1 PYTHONUNBUFFERED=1

{
    echo "# physfield on a GPU ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$py" -c "import cupy, numba; print('cupy', cupy.__version__, '| numba', numba.__version__)"
    echo '```'
    echo
    echo "## GPU tests"
    echo
    echo '```'
} > "$report"
set +e
timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/kernels/test_gpu.py tests/kernels/test_brute_force.py tests/fields/test_bound.py \
    tests/fields/test_fields.py -k "not readme and not numba_kernels and not cli" 2>&1 | tail -25 >> "$report"
set -e
echo '```' >> "$report"
echo >> "$report"
timeout 240 "$py" bench/bench_direction.py --quick >> "$report" 2>&1 || echo "(benchmark stopped: exit $?)" >> "$report"
cat "$report"
