#!/bin/bash
# Measurements behind tuning/profile.md, against a built sluice binary: one worker, governance
# on (a virtual key with rate limits, a team budget, ledger, audit log and access log), the
# bundled mock as the upstream, all on loopback. Needs perf (uprobes and tracepoints: run as
# root), python3, wrk and inferno (cargo install inferno).
#
#   measure.sh allocations BINARY [N]  allocator calls per request, per thread (N requests)
#   measure.sh sites BINARY [N]        where the worker's allocations come from
#   measure.sh clocks BINARY [N]       clock reads (libc's clock_gettime) per request, per thread
#   measure.sh clock-sites BINARY [N]  where the worker's clock reads come from
#   measure.sh copies BINARY [N]       the worker's memmove/memcpy calls and bytes per request, by
#                                      the sluice function that made them
#   measure.sh profile BINARY OUT      flame graph (OUT.svg) under wrk c=50, and syscalls and
#                                      io_uring requests per request (OUT.syscalls.txt)
#   measure.sh memory BINARY           resident memory idle, then after 10 s of wrk c=50, split
#                                      into the executable's pages and anonymous memory, and
#                                      the largest anonymous mappings
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
what=$1 bin=$(realpath "$2")
dir=$(mktemp -d)
trap 'kill ${gateway:-} ${mock:-} 2>/dev/null || true; perf probe -q -d "probe_sluice*:*" 2>/dev/null || true; perf probe -q -d "probe_libc*:*" 2>/dev/null || true; rm -rf "$dir"' EXIT

start_gateway() {
  "$bin" mock-upstream --listen 127.0.0.1:0 --workers 1 --no-request-log > "$dir/mock.out" 2>&1 &
  mock=$!
  until grep -q 'listening on' "$dir/mock.out" 2>/dev/null; do sleep 0.1; done
  local upstream; upstream=$(grep -o 'listening on [0-9.:]*' "$dir/mock.out" | sed 's/listening on //')
  local hash; hash=$(printf 'sk-bench' | sha256sum | cut -d' ' -f1)
  cat > "$dir/sluice.toml" <<CONF
[[keys]]
name = "bench"
sha256 = "$hash"
team = "bench"
rpm = 4000000000
tpm = 1000000000000
[[teams]]
name = "bench"
rpm = 4000000000
[[budgets]]
scope = "team"
name = "bench"
limit_usd = 280000.0
period = "total"
[store]
path = "$dir/sluice.db"
[audit]
path = "$dir/audit.jsonl"
[log]
access_log = "$dir/access.jsonl"
CONF
  "$bin" serve --config "$dir/sluice.toml" --listen 127.0.0.1:0 --workers 1 \
    --upstream "http://$upstream" --upstream-api-key sk-upstream > "$dir/sluice.out" 2> "$dir/sluice.err" &
  gateway=$!
  until grep -q '^listening on' "$dir/sluice.out" 2>/dev/null; do sleep 0.1; done
  port=$(grep -o '^listening on [0-9.:]*' "$dir/sluice.out" | sed 's/.*://')
}

# Counts per (thread, event) from `perf stat -x, --per-thread`, divided by $1 requests.
per_request() {
  grep -v '^#' "$dir/stat.csv" | grep -v '^$' | awk -F, -v n="$1" \
    '{t=$1; sub(/-[0-9]+$/, "", t); c[t" "$4]+=$2} END {for (k in c) if (c[k]>0) printf "%-55s %10d  %7.2f per request\n", k, c[k], c[k]/n}' | sort
}

probe_allocator() {
  perf probe -q -d 'probe_sluice*:*' 2>/dev/null || true
  for f in mi_malloc_aligned mi_zalloc_aligned mi_realloc_aligned; do perf probe -q -x "$bin" --add "$f"; done
  events=$(perf probe -l 2>/dev/null | awk '{print $1}' | paste -sd,)
}

# Every clock read goes through libc's clock_gettime (which then reads the vDSO).
probe_clock() {
  perf probe -q -d 'probe_libc*:*' 2>/dev/null || true
  local libc; libc=$(ldd "$bin" | awk '/libc\.so/ {print $3}')
  perf probe -q -x "$libc" --add clock_gettime
  events=probe_libc:clock_gettime
}

start_gateway
case "$what" in
  allocations|clocks)
    n=${3:-5000}
    python3 "$here/keepalive_client.py" 127.0.0.1 "$port" 1000  # warm-up
    if [ "$what" = clocks ]; then probe_clock; else probe_allocator; fi
    perf stat -e "$events" --per-thread -p "$gateway" -x, -o "$dir/stat.csv" -- \
      python3 "$here/keepalive_client.py" 127.0.0.1 "$port" "$n"
    echo "requests: $n"
    per_request "$n"
    ;;
  sites)
    n=${3:-300}
    python3 "$here/keepalive_client.py" 127.0.0.1 "$port" 1000
    probe_allocator
    perf record -q -e "$events" --call-graph dwarf,16384 -m 1024 -p "$gateway" -o "$dir/perf.data" -- \
      python3 "$here/keepalive_client.py" 127.0.0.1 "$port" "$n" 2>/dev/null
    perf script -i "$dir/perf.data" 2>/dev/null | python3 "$here/allocation_sites.py" sluice-worker-0 "$n"
    ;;
  clock-sites)
    n=${3:-300}
    python3 "$here/keepalive_client.py" 127.0.0.1 "$port" 1000
    probe_clock
    perf record -q -e "$events" --call-graph dwarf,16384 -m 1024 -p "$gateway" -o "$dir/perf.data" -- \
      python3 "$here/keepalive_client.py" 127.0.0.1 "$port" "$n" 2>/dev/null
    perf script -i "$dir/perf.data" 2>/dev/null | python3 "$here/allocation_sites.py" sluice-worker-0 "$n" "clock reads"
    ;;
  copies)
    n=${3:-300}
    python3 "$here/keepalive_client.py" 127.0.0.1 "$port" 1000
    perf probe -q -d 'probe_libc*:*' 2>/dev/null || true
    libc=$(ldd "$bin" | awk '/libc\.so/ {print $3}')
    # glibc's memcpy and memmove resolve to this one function on AVX2 machines; %dx is the length.
    perf probe -q -x "$libc" --add '__memmove_avx_unaligned_erms len=%dx:u64'
    perf record -q -e 'probe_libc:*' --call-graph dwarf,8192 -m 1024 -p "$gateway" -o "$dir/perf.data" -- \
      python3 "$here/keepalive_client.py" 127.0.0.1 "$port" "$n" 2>/dev/null
    perf script -i "$dir/perf.data" 2>/dev/null | python3 "$here/copy_sites.py" sluice-worker-0
    ;;
  profile)
    out=$3
    wrk -t1 -c50 -d3s -s "$here/post.lua" "http://127.0.0.1:$port/" > /dev/null
    wrk -t1 -c50 -d14s -s "$here/post.lua" "http://127.0.0.1:$port/" > "$out.wrk.txt" &
    load=$!
    sleep 2
    perf record -q -F 299 --call-graph dwarf,16384 -m 512 -p "$gateway" -o "$dir/perf.data" -- sleep 8 2>/dev/null
    wait $load
    perf stat -e raw_syscalls:sys_enter,io_uring:io_uring_submit_req --per-thread -p "$gateway" -x, \
      -o "$dir/stat.csv" -- wrk -t1 -c50 -d5s -s "$here/post.lua" "http://127.0.0.1:$port/" > "$dir/wrk.txt"
    requests=$(grep -o '^ *[0-9]* requests' "$dir/wrk.txt" | awk '{print $1}')
    { echo "requests: $requests"; per_request "$requests"; } > "$out.syscalls.txt"
    perf script -i "$dir/perf.data" 2>/dev/null | inferno-collapse-perf > "$out.folded"
    inferno-flamegraph --minwidth 1.0 --title "sluice: 1 worker, governance on, wrk c=50" < "$out.folded" > "$out.svg"
    ;;
  memory)
    show_memory() {
      echo "== $1"
      grep -E '^(Rss|Pss_File|Anonymous|AnonHugePages|LazyFree):' "/proc/$gateway/smaps_rollup" | paste -sd' '
      awk '/^[0-9a-f]+-[0-9a-f]+ /{m=$1" "$2" "$6} /^Anonymous:/{if ($2 >= 256) print "  " $2 " kB anonymous  " m}' \
        "/proc/$gateway/smaps" | sort -rn | head -8
    }
    sleep 1
    show_memory "idle"
    wrk -t1 -c50 -d10s -s "$here/post.lua" "http://127.0.0.1:$port/" > /dev/null
    show_memory "after wrk -c50 for 10 s"
    grep -E '^VmHWM' "/proc/$gateway/status"
    ;;
  *) echo "unknown measurement: $what" >&2; exit 2 ;;
esac
