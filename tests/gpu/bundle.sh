#!/bin/sh
# Packs what tests/gpu/run.sh needs on a GPU machine that has the CUDA toolkit and driver but not wafer's C
# dependencies: the GPU test and benchmark binaries built here, the shared libraries they need from this
# machine (not CUDA's: the GPU machine's own), the parity fixtures and the scripts.
#   tests/gpu/bundle.sh BUILD_DIR OUT_DIR
set -eu
build=$1
out=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/tests/fixtures" "$out/bench/gpu" "$out/tests/gpu"
# wafer-cuda.so next to the binaries: where they look for the CUDA module first
for b in tests/gpu/gpu_agree tests/gpu/ring_test bench/gpu/bench_gpu wafer-cuda.so; do
    [ -f "$build/$b" ] && cp "$build/$b" "$out/bin/"
done
for b in "$out"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}' | grep -v -e cuda -e libcublas -e 'libc\.so' -e 'libm\.so' -e libstdc++ \
        -e libgcc_s -e libdl -e libpthread -e librt -e ld-linux
done | sort -u | while read -r l; do cp -L "$l" "$out/lib/"; done
cp -r "$src/tests/fixtures/parity" "$out/tests/fixtures/"
mkdir -p "$out/models"
cp -r "$src/models/default" "$out/models/"
cp "$src/tests/gpu/run.sh" "$out/tests/gpu/"
cp "$src/bench/gpu/torch_bench.py" "$out/bench/gpu/"
du -sh "$out"
