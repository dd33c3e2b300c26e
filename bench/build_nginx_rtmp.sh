#!/bin/sh
# Build nginx with nginx-rtmp compiled in, for `bench/load.py --compare-nginx --workers N`.
#
# Debian's libnginx-mod-rtmp is a dynamically loaded module, and with it rtmp_auto_push never
# delivers across workers: each worker's auto-push Unix socket is never polled, so the publishing
# worker's push waits in the other worker's accept queue for ever (bench/README.md, "Workers").
# Compiled in, the module sets up that socket before nginx's event module registers the worker's
# listeners, and auto-push works.  Same versions as Debian 12 ships (nginx 1.22.1, nginx-rtmp
# 1.2.2) and Debian's optimisation flags, so only the linking differs from the packaged one.
#
#   bench/build_nginx_rtmp.sh [OUTDIR]      # default build/nginx-rtmp; prints the binary's path
#
# NGINX_SRC / RTMP_SRC: existing source trees to use instead of cloning them from GitHub.
set -eu
OUT=${1:-build/nginx-rtmp}
NGINX_TAG=release-1.22.1
RTMP_TAG=v1.2.2
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -x "$OUT/nginx" ]; then
    echo "$OUT/nginx"
    exit 0
fi
SRC="$OUT/src"
rm -rf "$SRC"
mkdir -p "$SRC"
if [ -n "${NGINX_SRC:-}" ]; then
    cp -R "$NGINX_SRC/." "$SRC/nginx"
else
    git clone -q --depth 1 --branch "$NGINX_TAG" https://github.com/nginx/nginx "$SRC/nginx"
fi
if [ -n "${RTMP_SRC:-}" ]; then
    cp -R "$RTMP_SRC/." "$SRC/rtmp"
else
    git clone -q --depth 1 --branch "$RTMP_TAG" https://github.com/arut/nginx-rtmp-module "$SRC/rtmp"
fi
cd "$SRC/nginx"
# Only what the benchmark uses: no PCRE, no gzip; OpenSSL for the RTMP handshake's HMAC.
./auto/configure --prefix="$OUT" --without-http_rewrite_module --without-pcre --without-http_gzip_module \
    --add-module="$SRC/rtmp" \
    --with-cc-opt='-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2' \
    --with-ld-opt='-Wl,-z,relro -Wl,-z,now -fPIC' >"$OUT/configure.log" 2>&1 \
    || { tail -20 "$OUT/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$OUT/make.log" 2>&1 || { tail -30 "$OUT/make.log" >&2; exit 1; }
cp objs/nginx "$OUT/nginx"
echo "$OUT/nginx"
