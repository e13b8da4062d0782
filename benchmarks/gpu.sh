#!/usr/bin/env bash
# One prepared GPU run of the speed benchmarks (latency per chunk and training throughput), about 5-8 minutes
# on one H100. Needs the package installed (`make install`, or `pip install -e .[test]` in the GPU's Python)
# and PushT keypoint data in $DATASET (examples/pusht/convert_zarr.py --no-images, or generate_expert.py).
#   DATASET=/path/to/pusht_kp OUT=results_dir bash benchmarks/gpu.sh
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
# Both U-Net sizes, DDIM-10, DDPM-100 and the few-step solver, batch 1, through select_action.
timeout 300 "$PY" benchmarks/latency.py --device cuda --sizes small large \
  --samplers DDIM-10 DDPM-100 DPM++2M-4 --repeats 30 --json "$OUT/latency_gpu.json" | tee "$OUT/latency_gpu.txt"
if [ -n "${DATASET:-}" ]; then
  timeout 240 "$PY" benchmarks/throughput.py --dataset "$DATASET" --device cuda --threads 0 --num-workers 4 \
    --steps 200 --log-freq 50 --json "$OUT/throughput_gpu.json" | tee "$OUT/throughput_gpu.txt"
fi
