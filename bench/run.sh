#!/bin/sh
# striate vs PyTorch benchmark (see bench/run.py).  OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset
# for this command only, so OpenBLAS detects this CPU and uses its own kernels.
cd "$(dirname "$0")/.." || exit 1
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/run.py "$@"
