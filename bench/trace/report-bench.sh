#!/usr/bin/env bash
# Report speed: `uprec report` over synthetic traces of 1M, 10M and 100M hits (wall time and peak RSS
# of the whole CLI run), and `perf report --stdio` over a perf.data holding N kernel-uprobe samples of
# the same kind (one sample per hit) on this machine; prints ns per sample and the ratio.
#
#   bench/trace/report-bench.sh [SIZES...]          default: 1000000 10000000 100000000
#   PERF_SAMPLES=N   uprobe samples for the perf side (default 1000000; recording costs ~10 us each)
#   UPREC_AOT=1      publish uprec with Native AOT (-p:UprecAot=true) instead of the JIT build
#   RUNS=N           runs per measurement (default 5); the median is printed, the machine being shared
# Needs root and perf for the perf side (skipped otherwise). Traces are cached in $WORK (default /tmp/uprec-report-bench).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${WORK:-/tmp/uprec-report-bench}"
mkdir -p "$work"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000 100000000)
perf_samples="${PERF_SAMPLES:-1000000}"

runs="${RUNS:-5}"
aot=()
build=JIT
if [ "${UPREC_AOT:-0}" = 1 ]; then aot=(-p:UprecAot=true); build=AOT; fi
bin="$work/uprec-bin-$build"
dotnet publish "$repo/cmd/uprec" -c Release "${aot[@]}" -o "$bin" >"$work/publish.log" 2>&1 || { cat "$work/publish.log"; exit 1; }
dotnet build "$here" -c Release -o "$work/bench-bin" >"$work/bench.log" 2>&1 || { cat "$work/bench.log"; exit 1; }
uprec="$bin/uprec"

# Prints "wall_seconds peak_rss_mb cpu_seconds" (user + sys, from /usr/bin/time; "?" without it).
# CPU time is reported too because this machine is shared and wall time swings with other jobs.
measure() { # command...
    local start end rss="?" cpu="?"
    start=$(date +%s.%N)
    if command -v /usr/bin/time >/dev/null; then
        /usr/bin/time -f "%M %U %S" -o "$work/rss" "$@" >/dev/null
        read -r kb user sys < <(tail -1 "$work/rss")
        rss=$(( kb / 1024 ))
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    else
        "$@" >/dev/null
    fi
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
    echo " $rss $cpu"
}

# The median of a list of numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "report benchmark on $(nproc) CPUs, kernel $(uname -r), uprec $build build, median of $runs runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for rows in "${sizes[@]}"; do
    trace="$work/syn-$rows.parquet"
    # The generator's traces are 2/3 calls and 1/3 returns: calls = rows * 2 / 3.
    [ -s "$trace" ] || "$work/bench-bin/TraceBench" gen "$trace" $((rows * 2 / 3)) >&2
    : >"$work/runs"
    for _ in $(seq "$runs"); do
        measure "$uprec" report -i "$trace" >>"$work/runs"
    done
    secs=$(awk '{ print $1 }' "$work/runs" | median)
    rss=$(awk '{ print $2 }' "$work/runs" | median)
    cpu=$(awk '{ print $3 }' "$work/runs" | median)
    actual=$("$uprec" report -i "$trace" --format csv | awk -F, 'NR > 1 { s += $2 } END { print s }')
    printf 'uprec report  %11s rows (%s calls): %6.2f s, %6.1f ns/row, CPU %s s, peak RSS %s MB (medians)\n' \
        "$rows" "$actual" "$secs" "$(awk -v t="$secs" -v n="$rows" 'BEGIN { print t * 1e9 / n }')" "$cpu" "$rss"
    last_uprec_ns=$(awk -v t="$secs" -v n="$rows" 'BEGIN { print t * 1e9 / n }')
done

if [ "$(id -u)" -ne 0 ] || ! command -v perf >/dev/null; then
    echo "perf side skipped (needs root and perf)"
    exit 0
fi
[ -e /sys/kernel/tracing/uprobe_events ] || mount -t tracefs nodev /sys/kernel/tracing
gcc -O2 -o "$work/calls" "$here/calls.c"
perf probe -q -d 'probe_calls:*' >/dev/null 2>&1 || true
trap 'perf probe -q -d "probe_calls:*" >/dev/null 2>&1 || true' EXIT
perf probe -q -x "$work/calls" work >/dev/null
if [ ! -s "$work/perf-$perf_samples.data" ]; then
    perf record -q -e probe_calls:work -o "$work/perf-$perf_samples.data" -- "$work/calls" "$perf_samples" >/dev/null 2>&1
fi
samples=$(perf report --stdio -i "$work/perf-$perf_samples.data" 2>/dev/null | awk '/^# Samples:/ { print $3 }')
: >"$work/runs"
for _ in $(seq "$runs"); do
    measure perf report --stdio -i "$work/perf-$perf_samples.data" >>"$work/runs" 2>/dev/null
done
psecs=$(awk '{ print $1 }' "$work/runs" | median)
prss=$(awk '{ print $2 }' "$work/runs" | median)
pcpu=$(awk '{ print $3 }' "$work/runs" | median)
perf_ns=$(awk -v t="$psecs" -v n="$perf_samples" 'BEGIN { print t * 1e9 / n }')
printf 'perf report   %11s samples (%s): %6.2f s, %6.1f ns/sample, CPU %s s, peak RSS %s MB (medians)\n' "$perf_samples" "$samples" "$psecs" "$perf_ns" "$pcpu" "$prss"
printf 'ratio perf/uprec per sample (uprec at its largest size): %.1fx (goal >= 10x)\n' \
    "$(awk -v p="$perf_ns" -v u="$last_uprec_ns" 'BEGIN { print p / u }')"
