#!/bin/sh
# Packs bench/e2e for a machine without Debian's packages, apt or internet (the GPU machine): wafer (with its CUDA
# module, wafer-cuda.so) built here, Debian's nginx with the ModSecurity module, wrk, openssl and bench/e2e/tlsload
# (built here), the shared
# libraries they need from this machine (not the C and C++ runtimes nor CUDA's: the target's own; as
# tests/gpu/bundle.sh), ModSecurity's configuration and the Core Rule Set, the benchmark's scripts, the request
# sample and the model. Each binary is started through a wrapper in bin/ that sets LD_LIBRARY_PATH for it alone, so
# the target's own python3 never sees these libraries.
#
#   bench/e2e/bundle.sh BUILD_DIR OUT.tgz [MODEL_DIR [SAMPLE]]   # MODEL_DIR: models/default; SAMPLE: a larger
#                                                                # request sample (bench/detection/sample.py's
#                                                                # output), the default of gpu.sh when given
# and on the target:
#   mkdir -p /tmp/b && tar xzf OUT.tgz -C /tmp/b && /tmp/b/e2e/gpu.sh   # bench/e2e/run.sh with BACKEND=cuda and
#                                                                       # every tool from the bundle; any of run.sh's
#                                                                       # variables can be set
#
# BUILD_DIR needs wafer and wafer-cuda.so (./scripts/build on a machine with nvcc). The archive is about 39 MB
# with the large sample (110 MB unpacked, most of it OpenBLAS and ICU data), under the 64 MiB that a GPU machine
# call carries with the working tree (8 MB).
set -eu
build=$1
tgz=$(readlink -f "$2")
model=${3:-models/default}
sample=${4:-}
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/wafer-e2e-bundle.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/e2e
[ -x "$build/wafer" ] || { echo "bundle.sh: no $build/wafer" >&2; exit 2; }
[ -f "$build/wafer-cuda.so" ] || echo "bundle.sh: no $build/wafer-cuda.so: the bundle will run the CPU backend only" >&2
for f in /usr/sbin/nginx /usr/bin/wrk /usr/bin/openssl /usr/lib/nginx/modules/ngx_http_modsecurity_module.so \
    /etc/nginx/modsecurity.conf /etc/nginx/unicode.mapping /etc/modsecurity/crs/crs-setup.conf \
    /usr/share/modsecurity-crs/rules; do
    [ -e "$f" ] || { echo "bundle.sh: missing $f (run bench/e2e/run.sh here once: it installs the packages)" >&2; exit 2; }
done
mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/modsec" "$out/crs" "$out/bench/e2e" \
    "$out/tests/fixtures/detection" "$out/models"
cp "$build/wafer" /usr/sbin/nginx /usr/bin/wrk /usr/bin/openssl "$out/libexec/"
[ -f "$build/wafer-cuda.so" ] && cp "$build/wafer-cuda.so" "$out/libexec/"
cp /usr/lib/nginx/modules/ngx_http_modsecurity_module.so "$out/libexec/"
cc -O2 -o "$out/libexec/tlsload" "$src/bench/e2e/tlsload.c" -lssl -lcrypto -lpthread
for b in "$out"/libexec/*; do
    # by file name: the C and C++ runtimes and CUDA's libraries stay the target's own (a substring test would also
    # drop libicudata and librtmp, which the target may not have)
    ldd "$b" | awk '/=> \// {print $3}' | grep -v -E \
        '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64|libcuda|libcudart|libcublas|libcublasLt|libnvrtc|libnvJitLink)\.so' || true
done | sort -u | while read -r l; do cp -L "$l" "$out/lib/"; done
for b in wafer nginx wrk openssl tlsload; do
    cat >"$out/bin/$b" <<EOF
#!/bin/sh
d=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$d/lib:/usr/local/cuda/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" WAFER_CUDA_MODULE="\$d/libexec/wafer-cuda.so" exec "\$d/libexec/$b" "\$@"
EOF
    chmod +x "$out/bin/$b"
done
cp /etc/nginx/modsecurity.conf /etc/nginx/unicode.mapping "$out/modsec/"
cp /etc/modsecurity/crs/crs-setup.conf "$out/crs/"
cp -rL /usr/share/modsecurity-crs/rules "$out/crs/rules"
mkdir -p "$out/bench/detection"
cp "$src/bench/detection/sample.py" "$out/bench/detection/"
cp "$src"/bench/e2e/run.sh "$src"/bench/e2e/mix.py "$src"/bench/e2e/mix.lua "$src"/bench/e2e/check.py \
    "$src"/bench/e2e/upstream.py "$out/bench/e2e/"
cp "$src/tests/fixtures/detection/sample.jsonl" "$out/tests/fixtures/detection/"
[ -n "$sample" ] && cp "$sample" "$out/sample.jsonl"
cp -r "$model" "$out/models/default"
cat >"$out/gpu.sh" <<'EOF'
#!/bin/sh
# bench/e2e on the bundle (made by bench/e2e/bundle.sh): every tool from here, wafer on the GPU backend.
#   ./gpu.sh                      # as bench/e2e/run.sh, BACKEND=cuda; any of its variables can be set
d=$(cd "$(dirname "$0")" && pwd)
export WAFER_BIN="$d/bin/wafer" NGINX="$d/bin/nginx" WRK="$d/bin/wrk" OPENSSL="$d/bin/openssl" TLSLOAD="$d/bin/tlsload"
export MODSEC_MODULE="$d/libexec/ngx_http_modsecurity_module.so" MODSEC_CONF="$d/modsec/modsecurity.conf"
export MODSEC_UNICODE="$d/modsec/unicode.mapping" CRS_SETUP="$d/crs/crs-setup.conf" CRS_RULES="$d/crs/rules"
export BACKEND=${BACKEND:-cuda} INSTALL=0
if [ -z "${SAMPLE:-}" ] && [ -f "$d/sample.jsonl" ]; then export SAMPLE="$d/sample.jsonl" COUNT=${COUNT:-20000}; fi
[ -n "${PYTHON:-}" ] || export PYTHON=$(command -v python3)
exec bash "$d/bench/e2e/run.sh"
EOF
chmod +x "$out/gpu.sh"
tar czf "$tgz" -C "$tmp" e2e
echo "bundle.sh: $(du -sh "$out" | cut -f1) unpacked, $(du -h "$tgz" | cut -f1) in $tgz"
