#!/bin/sh
# run.sh — the benchmark runs of docs/benchmarks.md, in one go.
#
#   tools/bench/run.sh [BUILD_DIR] [WORK_DIR]
#
# BUILD_DIR (default build) holds nornd and norn-bench; WORK_DIR (default
# /tmp/norn-bench, emptied first) gets the data dirs: a fresh one per ingest
# run, and the 10^4 and 10^6 session stores for the listing runs (about
# 0.6 GB after compaction). Takes about three minutes on two cores.
# Environment: SECONDS_PER_RUN (10), STREAMS (4), LIST_REQUESTS (2000).
set -eu

BUILD=${1:-build}
WORK=${2:-/tmp/norn-bench}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
STREAMS=${STREAMS:-4}
LIST_REQUESTS=${LIST_REQUESTS:-2000}
NORND=$BUILD/nornd
BENCH=$BUILD/norn-bench

for b in "$NORND" "$BENCH"; do
    [ -x "$b" ] || { echo "run.sh: $b is missing: build first (cmake --build $BUILD)" >&2; exit 2; }
done
rm -rf "$WORK"
mkdir -p "$WORK"
NORND_PID=

start_nornd() { # data dir; sets PORT and NORND_PID
    rm -f "$WORK/port"
    "$NORND" --listen 127.0.0.1:0 --port-file "$WORK/port" --data-dir "$1" --log-level warn \
        >"$WORK/nornd.log" 2>&1 &
    NORND_PID=$!
    # The first start on a freshly loaded store replays its write-ahead log.
    i=0
    while [ ! -s "$WORK/port" ]; do
        i=$((i + 1))
        if [ $i -gt 3000 ] || ! kill -0 "$NORND_PID" 2>/dev/null; then
            echo "run.sh: nornd did not start:" >&2
            cat "$WORK/nornd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    PORT=$(cat "$WORK/port")
}

stop_nornd() {
    kill "$NORND_PID"
    wait "$NORND_PID" || true
    NORND_PID=
}

trap '[ -z "$NORND_PID" ] || kill "$NORND_PID" 2>/dev/null || true' EXIT

echo "## machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM"
for batch in 1 10 100; do
    echo
    echo "## ingest: RecordSteps, batch $batch, $STREAMS streams"
    start_nornd "$WORK/ingest-$batch"
    "$BENCH" ingest --server "127.0.0.1:$PORT" --streams "$STREAMS" --batch "$batch" \
        --seconds "$SECONDS_PER_RUN"
    stop_nornd
    rm -rf "$WORK/ingest-$batch"
done

for n in 10000 1000000; do
    echo
    echo "## load: $n sessions"
    "$BENCH" load --data-dir "$WORK/sessions-$n" --sessions "$n" --seed 42
done

for n in 10000 1000000; do
    echo
    echo "## list: ListSessions page 50, $n sessions"
    start_nornd "$WORK/sessions-$n"
    # Let the server settle (log replay, compaction) before measuring.
    sleep 5
    "$BENCH" list --server "127.0.0.1:$PORT" --requests "$LIST_REQUESTS" --follow 10 --chains 100
    echo "### the same, each first page at a random point in time"
    "$BENCH" list --server "127.0.0.1:$PORT" --requests "$LIST_REQUESTS" --random-window \
        --follow 10 --chains 100
    stop_nornd
done
