#!/usr/bin/env bash
# The documented full flow (docs/PERFORMANCE.md): $1 = sled or pg, $2 = a tag for the
# outputs in /tmp (flow-TAG.out, flow-metrics-TAG.txt, flow-report-TAG/). Build first:
# cargo build --release -p engine -p loadtest. Engine on core 0 with one actor thread,
# simulator on core 1; for pg, PostgreSQL from Debian's binaries in /tmp/pgb, run as the
# postgres user, a fresh database each run; CPU read from /proc over the simulator's run.
set -u
cd "$(dirname "$0")/.."
B=$1; TAG=$2
target/release/loadtest engine-config --compression 60 > /tmp/speedy-60x.toml
rm -rf /tmp/flowdata; mkdir -p /tmp/flowdata
DB=()
if [ "$B" = pg ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | head -1)
  if [ ! -f /tmp/pgb/PG_VERSION ]; then
    rm -rf /tmp/pgb; mkdir -p /tmp/pgb; chown postgres /tmp/pgb
    su postgres -c "$PGBIN/initdb -D /tmp/pgb -A trust >/dev/null"
  fi
  su postgres -c "$PGBIN/pg_ctl -D /tmp/pgb -o \"-k /tmp/pgb -c listen_addresses='' -p 5432 -c max_connections=200\" -l /tmp/pgb/log -w start" >/dev/null 2>&1 || true
  su postgres -c "psql -h /tmp/pgb -p 5432 -c 'DROP DATABASE IF EXISTS flow' -c 'CREATE DATABASE flow'" >/dev/null
  DB=(--database 'postgres://postgres@localhost/flow?host=/tmp/pgb&port=5432')
fi
taskset -c 0 target/release/engine --config /tmp/speedy-60x.toml --data-dir /tmp/flowdata "${DB[@]}" \
    --admin-key flow-admin-key-0123456789 --listen 127.0.0.1:18080 --workers 1 > /tmp/flow-engine-$TAG.log 2>&1 &
EP=$!
for i in $(seq 1 100); do curl -sf 127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
pgcpu() { local t=0; for p in $(pgrep -u postgres postgres); do set -- $(cut -d' ' -f14,15 /proc/$p/stat 2>/dev/null); t=$((t + ${1:-0} + ${2:-0})); done; echo $t; }
E0=$(cut -d' ' -f14,15 /proc/$EP/stat | awk '{print $1+$2}'); P0=$(pgcpu); T0=$(date +%s)
taskset -c 1 target/release/loadtest flow --url 127.0.0.1:18080 --admin-key flow-admin-key-0123456789 \
    --associates 10000 --users 2000 --duration-s 60 --drain-s 120 --quiet --report-dir /tmp/flow-report-$TAG > /tmp/flow-$TAG.out 2>&1
T1=$(date +%s); E1=$(cut -d' ' -f14,15 /proc/$EP/stat | awk '{print $1+$2}'); P1=$(pgcpu)
curl -s 127.0.0.1:18080/metrics > /tmp/flow-metrics-$TAG.txt
echo "engine CPU $(( (E1-E0)/100 )) s over $((T1-T0)) s; postgres CPU $(( (P1-P0)/100 )) s" >> /tmp/flow-$TAG.out
kill $EP; wait $EP 2>/dev/null
