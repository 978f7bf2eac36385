#!/bin/sh
# Packs what bench/inspect/run.sh needs on the GPU machine into one folder: wafer and wafer-cuda.so, ring_test and
# gpu_agree (tests/gpu), wrk and nginx from this machine, the shared libraries they need from here (not the C/C++
# runtimes nor CUDA's: the target's own, as tests/gpu/bundle.sh), and the scripts.
#   bench/inspect/bundle.sh BUILD_DIR OUT_DIR      # e.g. build /work/main/.devwork/gpuring (carried by the run tool)
set -eu
build=$1
out=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/scripts"
cp "$build/wafer" "$build/wafer-cuda.so" "$build/tests/gpu/ring_test" "$build/tests/gpu/gpu_agree" /usr/bin/wrk \
    /usr/sbin/nginx "$out/bin/"
for b in "$out"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}' | grep -v -E \
        '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64|libcuda|libcudart|libcublas|libcublasLt|libnvrtc|libnvJitLink)\.so' || true
done | sort -u | while read -r l; do cp -L "$l" "$out/lib/"; done
cp "$src/bench/inspect/run.sh" "$src/bench/inspect/decisions.py" "$src/bench/inspect/uniq.lua" \
    "$src/bench/e2e/check.py" "$src/bench/e2e/upstream.py" "$out/scripts/"
du -sh "$out"
