#!/usr/bin/env bash
# Issue 5's GPU checks in one run, for a lent GPU machine with CuPy and PyTorch installed
# (at most 9 minutes, within the device tool's 10-minute command limit):
#   1. the gpu-marked tests (CuPy equals NumPy for every op, a training step on the GPU);
#   2. images/s of a training step, sknet_cifar_small and skresnet18 at 32x32, vs PyTorch on cuDNN;
#   3. the SK convolutions, forward and forward+backward, vs PyTorch on cuDNN.
# Logs go to $OUT (the device tool's output folder) or ./gpu-results.
#
#   bash benchmarks/gpu.sh                 # from the repository root
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__,
          'cupy', cupy.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$out/machine.txt"
timeout 170 $py -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu_tests.txt" || status=1
timeout 230 $py benchmarks/train_step.py --device cuda --models sknet_cifar_small skresnet18 --batch 256 --steps 20 \
    2>&1 | tee "$out/train_step.txt" || status=1
timeout 150 $py benchmarks/conv.py --device cuda --quick --repeats 10 2>&1 | tee "$out/conv.txt" || status=1
exit $status
