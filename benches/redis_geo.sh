#!/usr/bin/env bash
# Redis GEO anchors for docs/PERFORMANCE.md: GEOADD and a filtered-by-radius GEOSEARCH
# (nearest 10 within 1 km) on 1 M points in the same metro box as the geo benchmark.
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools).
# Starts its own server on 127.0.0.1 (a free port), without persistence, and stops it.
#
# Run: benches/redis_geo.sh [points] [requests]
set -euo pipefail
POINTS=${1:-1000000}
REQUESTS=${2:-200000}
PORT=${REDIS_PORT:-16379}
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
DIR=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize yes >/dev/null
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Load the metro: uniform points in 12.8-13.2 N, 77.4-77.8 E, fixed seed, one GEOADD of
# 1 000 members per command, through redis-cli's pipe mode.
python3 - "$POINTS" <<'PY' | redis-cli -p "$PORT" --pipe >/dev/null
import random, sys
n = int(sys.argv[1]); rnd = random.Random(42); out = sys.stdout
def cmd(args):
    out.write("*%d\r\n" % len(args))
    for a in args:
        a = str(a); out.write("$%d\r\n%s\r\n" % (len(a.encode()), a))
batch = ["GEOADD", "metro"]
for i in range(n):
    batch += ["%.6f" % rnd.uniform(77.4, 77.8), "%.6f" % rnd.uniform(12.8, 13.2), "a%d" % i]
    if len(batch) >= 3002:
        cmd(batch); batch = ["GEOADD", "metro"]
if len(batch) > 2: cmd(batch)
PY
echo "loaded $(redis-cli -p "$PORT" zcard metro) points"
echo "redis $(redis-server --version | awk '{print $3}'), $(nproc) cores, 50 clients, no pipelining"
# GEOSEARCH nearest 10 within 1 km of the metro centre.
redis-benchmark -p "$PORT" -c 50 -n "$REQUESTS" -q \
  GEOSEARCH metro FROMLONLAT 77.6 13.0 BYRADIUS 1 km ASC COUNT 10 | tr '\r' '\n' | tail -n 1
# GEOADD (a position update) of random members at one spot.
redis-benchmark -p "$PORT" -c 50 -n "$REQUESTS" -r "$POINTS" -q \
  GEOADD metro 77.6 13.0 a__rand_int__ | tr '\r' '\n' | tail -n 1
