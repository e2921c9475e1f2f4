#!/usr/bin/env bash
# Per-hit cost of a uprec probe against a kernel uprobe driven by perf, on the same program in
# the same run. A benchmark, not a test: it prints numbers and judges nothing.
#
# Usage (as root, for perf's kernel uprobes):
#   bench/hitcost/run.sh [CALLS [REPEATS]]        entry probes       (defaults: 100000 calls, 5 runs)
#   bench/hitcost/run.sh --return [CALLS [REPEATS]]  entry+return probes (uprec func%return vs perf func + func%return)
#   bench/hitcost/run.sh --filtered [CALLS [REPEATS]] a probe whose --filter no task matches: the
#                                                    process should get no patch and pay nothing
# Environment:
#   UPREC   command that runs uprec (default: publishes cmd/uprec with `dotnet publish -c Release`
#           into a temp dir and uses DIR/uprec)
#   PERF    perf binary (default: perf); without root or perf, the perf rows are skipped
#
# hitcost.c times its own loop with CLOCK_MONOTONIC, so start-up, attach and trace writing at the
# end do not count; ns/hit = (traced loop - untraced loop) / CALLS, the median of REPEATS runs.
# Rows: untraced; uprec record -e; perf stat -e (kernel uprobe, counting only); perf record -e
# (kernel uprobe, a sample per hit). The ratio is uprec / perf record, of the medians; the
# spread over runs is printed too, because a ptrace stop costs several times more when the
# scheduler puts tracer and target on different CPUs.
set -euo pipefail

mode=entry
case "${1:-}" in
    --return) mode=return; shift ;;
    --filtered) mode=filtered; shift ;;
esac
calls="${1:-100000}"
repeats="${2:-5}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/uprec-hitcost.XXXXXX)"
perf="${PERF:-perf}"
probe_group=probe_hitcost
probes_added=0

cleanup() {
    if [ "$probes_added" -eq 1 ]; then
        "$perf" probe -q -d "$probe_group:*" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/hitcost" "$here/hitcost.c"
bin="$work/hitcost"

if [ -z "${UPREC:-}" ]; then
    echo "publishing cmd/uprec (Release) ..." >&2
    dotnet publish "$repo/cmd/uprec" -c Release -o "$work/uprec-bin" >"$work/publish.log" 2>&1 \
        || { cat "$work/publish.log" >&2; exit 1; }
    UPREC="$work/uprec-bin/uprec"
fi

# Median loop_ns of REPEATS runs of: "$@" (a command line that ends by running $bin $calls).
median_loop_ns() {
    local values=() out
    for _ in $(seq "$repeats"); do
        out="$("$@" 2>"$work/last.err")" || { echo "failed: $* ($(tail -1 "$work/last.err"))" >&2; echo NA; return; }
        values+=("$(awk '$1 == "loop_ns" { print $2 }' <<<"$out")")
    done
    printf '%s\n' "${values[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[1], v[NR] }'
}

per_hit() { # "median min max" baseline_ns hits_per_call -> median ns/hit
    if [ "$1" = NA ]; then echo NA; return; fi
    awk -v t="${1%% *}" -v b="$2" -v n="$calls" -v k="$3" 'BEGIN { printf "%.1f", (t - b) / (n * k) }'
}

spread() { # "median min max" baseline_ns hits_per_call -> "(min .. max)" ns/hit
    if [ "$1" = NA ]; then return; fi
    read -r _ lo hi <<<"$1"
    awk -v lo="$lo" -v hi="$hi" -v b="$2" -v n="$calls" -v k="$3" \
        'BEGIN { printf "(runs: %.1f .. %.1f)", (lo - b) / (n * k), (hi - b) / (n * k) }'
}

uprec_filter=()
if [ "$mode" = entry ]; then
    uprec_spec="$bin:func"; perf_events=(-e "$probe_group:func"); hits=1
elif [ "$mode" = filtered ]; then
    uprec_spec="$bin:func"; uprec_filter=(--filter 'comm == "no-such-comm"'); perf_events=(-e "$probe_group:func"); hits=1
else
    uprec_spec="$bin:func%return"; perf_events=(-e "$probe_group:func" -e "$probe_group:func__return"); hits=1
fi

echo "hitcost: $calls calls, median of $repeats runs, $mode probes, $(nproc) CPUs, kernel $(uname -r)"
base_stats=$(median_loop_ns "$bin" "$calls")
base=${base_stats%% *}
printf '%-28s %10s ns/call\n' "untraced" "$(awk -v t="$base" -v n="$calls" 'BEGIN { printf "%.1f", t / n }')"

uprec_ns=$(median_loop_ns "$UPREC" record -o "$work/trace.parquet" -e "$uprec_spec" "${uprec_filter[@]}" -- "$bin" "$calls")
uprec_hit=$(per_hit "$uprec_ns" "$base" "$hits")
printf '%-28s %10s ns/hit %s\n' "uprec record" "$uprec_hit" "$(spread "$uprec_ns" "$base" "$hits")"
# The tracer at SCHED_IDLE keeps each hit's two wake-ups on one CPU (see Tracer.IdleTracer).
idle_ns=$(median_loop_ns "$UPREC" record --idle-tracer -o "$work/trace.parquet" -e "$uprec_spec" "${uprec_filter[@]}" -- "$bin" "$calls")
idle_hit=$(per_hit "$idle_ns" "$base" "$hits")
printf '%-28s %10s ns/hit %s\n' "uprec record --idle-tracer" "$idle_hit" "$(spread "$idle_ns" "$base" "$hits")"

perf_hit=NA
if [ "$mode" = filtered ]; then
    echo "perf rows skipped: perf has no per-process filter that avoids the kernel uprobe's trap"
elif [ "$(id -u)" -eq 0 ] && command -v "$perf" >/dev/null; then
    if [ ! -e /sys/kernel/tracing/uprobe_events ]; then
        mount -t tracefs nodev /sys/kernel/tracing
    fi
    "$perf" probe -q -d "$probe_group:*" >/dev/null 2>&1 || true
    probes_added=1
    "$perf" probe -q -x "$bin" func >/dev/null
    if [ "$mode" = return ]; then "$perf" probe -q -x "$bin" 'func%return' >/dev/null; fi
    stat_ns=$(median_loop_ns "$perf" stat -x, -o "$work/stat.txt" "${perf_events[@]}" -- "$bin" "$calls")
    printf '%-28s %10s ns/hit %s\n' "perf stat (kernel uprobe)" "$(per_hit "$stat_ns" "$base" "$hits")" "$(spread "$stat_ns" "$base" "$hits")"
    record_ns=$(median_loop_ns "$perf" record -q -o "$work/perf.data" "${perf_events[@]}" -- "$bin" "$calls")
    perf_hit=$(per_hit "$record_ns" "$base" "$hits")
    printf '%-28s %10s ns/hit %s\n' "perf record (kernel uprobe)" "$perf_hit" "$(spread "$record_ns" "$base" "$hits")"
else
    echo "perf rows skipped: they need root and perf (kernel uprobes)"
fi

if [ "$uprec_hit" != NA ] && [ "$perf_hit" != NA ]; then
    printf '%-28s %10s (goal <= 1.0)\n' "ratio uprec / perf record" \
        "$(awk -v u="$uprec_hit" -v p="$perf_hit" 'BEGIN { printf "%.2f", u / p }')"
    printf '%-28s %10s\n' "ratio --idle-tracer / perf" \
        "$(awk -v u="$idle_hit" -v p="$perf_hit" 'BEGIN { printf "%.2f", u / p }')"
fi
