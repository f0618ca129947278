#!/usr/bin/env bash
# The parameter server on a CUDA machine, in one go: installs what it needs, runs the 10M-row
# four-way benchmark with the device tier on the GPU (each step's rows trained by fbgemm's CUDA
# kernel over a compact working-set table) and the 2-rank nccl test, and prints one table.
#
#   bash benchmarks/hps_gpu.sh            # from the repository root; ROWS=1000000 for a quick look
#
# Needs: python3.11, an NVIDIA GPU (two for the nccl test), and a package index (or a venv in
# $VENV that already has torch 2.13 with CUDA, fbgemm-gpu 1.8.0 and the project's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
ROWS=${ROWS:-10000000}
OUT=${OUT:-benchmarks/out-gpu}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
# torch's default wheel on PyPI is the CUDA build; fbgemm-gpu (not -cpu) is the CUDA fbgemm for it.
"$VENV/bin/python" -c "import fbgemm_gpu, numba, pydantic, pydantic_settings, psutil, pytest" 2>/dev/null || \
    "$VENV/bin/pip" install -q torch==2.13.0 fbgemm-gpu==1.8.0 numba==0.68.1 numpy==2.4.6 \
        "pydantic>=2.7,<3" "pydantic-settings>=2.4,<3" psutil pytest matplotlib
"$VENV/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; \
print('torch', torch.__version__, 'GPUs', torch.cuda.device_count())"

export PYTHONPATH=$PWD
mkdir -p "$OUT"
status=0
"$VENV/bin/python" benchmarks/hps.py --rows "$ROWS" --only train --device cuda --out "$OUT" || status=$?

gpus=$("$VENV/bin/python" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
    "$VENV/bin/python" -m pytest -q tests/hps/test_distributed.py -k nccl -p no:cacheprovider \
        > "$OUT/nccl.log" 2>&1 && nccl="passed" || { nccl="FAILED (see $OUT/nccl.log)"; status=1; }
else
    nccl="not run: nccl needs two GPUs, this machine has $gpus"
fi

echo
echo "== HPS on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $ROWS rows =="
[ -f "$OUT/hps_results.md" ] && cat "$OUT/hps_results.md"
echo "2-rank nccl test (tests/hps/test_distributed.py -k nccl): $nccl"
exit $status
