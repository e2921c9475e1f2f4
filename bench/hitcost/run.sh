#!/usr/bin/env bash
# Per-hit cost of a uprec probe (in-process path and trap path) against uftrace and a kernel uprobe
# driven by perf, on the same program in the same run. A benchmark, not a test: it prints numbers
# and judges nothing.
#
# Usage (as root, for perf's kernel uprobes):
#   bench/hitcost/run.sh [CALLS [REPEATS]]     (defaults: 10000000 calls per thread, 5 runs;
#                                               about 6 minutes on the 2-vCPU development VM)
# One run prints one table: a column per mode (entry probe; entry+return probe) and thread count
# (1 and 2 threads, each thread making the calls), a row per tracer:
#   untraced                     ns per call of the bare loop (the baseline of every other row)
#   uprec (default path)         uprec record -e hitcost:func[%return], --hit-path auto
#   uprec default, ring not full the same with FEW_CALLS per thread, fewer than a thread's ring of
#                                samples holds: every hit takes its timestamp and writes its record
#                                (at CALLS most samples are dropped, and a dropped hit is cheaper).
#                                Each thread first makes WARMUP_CALLS untimed calls and pauses 50 ms
#                                (hitcost's WARMUP), so the first touch of each ring page is not
#                                timed and the drain has emptied the ring; its baseline is the
#                                untraced loop with the same warm-up
#   uprec --hit-path trap        every probe on the int3 trap path
#   uprec, filtered out          a --filter no task matches: the process should get no patch at all
#   uftrace -P func              uftrace record -P '^func$': dynamic patching of the same binary
#                                (uftrace 0.13 of Debian 12 patches a plain -O2 build). If a trial
#                                run counts no call there, the row uses a second copy built with
#                                -pg -mfentry -mnop-mcount -no-pie (a 5-byte nop at each function
#                                entry, which uftrace -P turns into a call) against that copy's own
#                                untraced loop, and says so. uftrace always hooks the return too,
#                                so its "entry" columns are its entry+return cost
#   perf record (kernel uprobe)  perf probe -x hitcost func [func%return] + perf record
#   samples kept, lost           for the default-path row: (count - lost) from `uprec report
#                                --format json`, per second of loop time, in millions, and the lost
#                                share; for the "ring not full" row the lost share (its count
#                                includes the warm-up calls)
# Environment:
#   UPREC          command that runs uprec (default: publishes cmd/uprec with `dotnet publish -c
#                  Release -p:UprecAot=true` (Native AOT, what uprec-demo ships) into a temp dir and
#                  uses DIR/uprec; the JIT build if the AOT publish fails)
#   PERF           perf binary (default: perf); without root or perf, the perf row is skipped
#   UFTRACE        uftrace binary (default: uftrace); when missing and run as root, it is installed
#                  with apt-get (Debian package uftrace); otherwise the row is skipped
#   SLOW_CALLS     calls per thread for rows that stop on every hit (default 100000): the trap path
#                  and perf cost ~10 us per hit here, so CALLS would take minutes. The default-path
#                  and filtered rows first run once at SLOW_CALLS and use SLOW_CALLS too when that
#                  run costs more than 1 us per hit (e.g. %return probes while they take the trap path)
#   UFTRACE_CALLS  calls per thread for uftrace (default 1000000; its trace grows ~32 bytes per call)
#   FEW_CALLS      calls per thread of the "ring not full" row (default 50000; uprec's rings hold
#                  131072 samples per thread; entry+return columns use half, as each call writes
#                  an entry and a return record, and half the warm-up too)
#   WARMUP_CALLS   its untimed calls per thread before them (default 131072: a ring's worth, so
#                  every ring page is touched and, unless the drain falls behind, nothing dropped)
#   IDLE_TRACER=1  adds the row `uprec --hit-path trap --idle-tracer`
#
# hitcost.c times its own loop with CLOCK_MONOTONIC, so start-up, attach and trace writing at the
# end do not count. With 2 threads the loop time is the wall time of the parallel section.
# ns/hit = (traced loop - untraced loop at the same calls and threads) / (calls x threads), the
# median of REPEATS runs; with 2 threads on 2 CPUs that is wall time per hit, not CPU time per hit.
# Entry+return columns count one call (an entry and its return) as one hit. The calls per thread
# of each cell and the spread over runs are printed below the table, because a ptrace stop costs
# several times more when the scheduler puts tracer and target on different CPUs.
set -euo pipefail

case "${1:-}" in
    -*) echo "usage: $0 [CALLS [REPEATS]] (every mode is in one table; see the header for the environment)" >&2; exit 2 ;;
esac
calls="${1:-10000000}"
repeats="${2:-5}"
slow_calls="${SLOW_CALLS:-100000}"
uftrace_calls="${UFTRACE_CALLS:-1000000}"
few_calls="${FEW_CALLS:-50000}"
warmup_calls="${WARMUP_CALLS:-131072}"
warm=$warmup_calls
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/uprec-hitcost.XXXXXX)"
# Every path below is absolute; working in $work keeps the gmon.out that a -pg build writes at
# exit (the uftrace fallback copy) out of the caller's directory.
cd "$work"
out="$work/out"
perf="${PERF:-perf}"
uftrace="${UFTRACE:-uftrace}"
probe_group=probe_hitcost
probes_added=0
# A default-path row whose calibration run costs more than this per hit stops on every hit.
stopping_ns=1000

cleanup() {
    if [ "$probes_added" -eq 1 ]; then
        "$perf" probe -q -d "$probe_group:*" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -pthread -o "$work/hitcost" "$here/hitcost.c"
bin="$work/hitcost"

build="given by UPREC"
if [ -z "${UPREC:-}" ]; then
    # The Native AOT build is what uprec-demo ships; without its linker prerequisites, the JIT one.
    echo "publishing cmd/uprec (Release, Native AOT) ..." >&2
    if dotnet publish "$repo/cmd/uprec" -c Release -p:UprecAot=true -o "$work/uprec-bin" >"$work/publish.log" 2>&1; then
        build="Native AOT"
    else
        echo "Native AOT publish failed (see $work/publish.log); publishing the JIT build" >&2
        dotnet publish "$repo/cmd/uprec" -c Release -o "$work/uprec-jit" >"$work/publish.log" 2>&1 \
            || { cat "$work/publish.log" >&2; exit 1; }
        rm -rf "$work/uprec-bin"
        mv "$work/uprec-jit" "$work/uprec-bin"
        build="JIT"
    fi
    UPREC="$work/uprec-bin/uprec"
fi

notes=()

if ! command -v "$uftrace" >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing uftrace (apt-get) ..." >&2
        { apt-get update && apt-get install -y uftrace; } >"$work/apt.log" 2>&1 || cat "$work/apt.log" >&2
    fi
fi
have_uftrace=0
uftrace_bin=$bin
# Calls of func that uftrace saw in a trial run of BINARY (0 when it could not patch it).
uftrace_counts() {
    rm -rf "$work/uftrace-trial"
    "$uftrace" record --no-libcall -d "$work/uftrace-trial" -P '^func$' "$1" 1000 >/dev/null 2>&1 || { echo 0; return; }
    "$uftrace" report -d "$work/uftrace-trial" 2>/dev/null | awk '$NF == "func" { n = $(NF - 1) } END { print n + 0 }'
}
if command -v "$uftrace" >/dev/null; then
    have_uftrace=1
    if [ "$(uftrace_counts "$bin")" != 1000 ]; then
        # -mnop-mcount is not implemented for -fPIC, hence -no-pie.
        gcc -O2 -pthread -pg -mfentry -mnop-mcount -fno-pie -no-pie -o "$work/hitcost-fentry" "$here/hitcost.c"
        uftrace_bin="$work/hitcost-fentry"
        if [ "$(uftrace_counts "$uftrace_bin")" = 1000 ]; then
            notes+=("uftrace could not patch the plain build: its row ran a copy built with -pg -mfentry -mnop-mcount -no-pie, against that copy's untraced loop")
        else
            have_uftrace=0
            notes+=("uftrace row skipped: it counted no call of func, in the plain build or in a -pg -mfentry -mnop-mcount copy")
        fi
    fi
else
    notes+=("uftrace row skipped: no $uftrace (install the Debian package uftrace, or run as root)")
fi

have_perf=0
if [ "$(id -u)" -eq 0 ] && command -v "$perf" >/dev/null; then
    if [ ! -e /sys/kernel/tracing/uprobe_events ]; then
        mount -t tracefs nodev /sys/kernel/tracing
    fi
    "$perf" probe -q -d "$probe_group:*" >/dev/null 2>&1 || true
    probes_added=1
    "$perf" probe -q -x "$bin" func >/dev/null
    "$perf" probe -q -x "$bin" 'func%return' >/dev/null
    have_perf=1
else
    notes+=("perf row skipped: it needs root and perf (kernel uprobes)")
fi

# Runs one row once: ROW MODE THREADS CALLS. Prints the program's stdout (uprec, uftrace and
# perf pass it through); every output file goes to $out, emptied before each run.
# untraced_fentry is the untraced loop of the copy uftrace may need (the baseline of its row),
# untraced_warm the baseline of the "ring not full" row.
run_row() {
    local row=$1 mode=$2 threads=$3 n=$4 spec=func events=(-e "$probe_group:func")
    if [ "$mode" = return ]; then
        spec='func%return'
        events+=(-e "$probe_group:func__return")
    fi
    rm -rf "$out" && mkdir -p "$out"
    case "$row" in
        untraced) "$bin" "$n" "$threads" ;;
        untraced_fentry) "$uftrace_bin" "$n" "$threads" ;;
        uprec) "$UPREC" record -o "$out/trace.parquet" -e "$bin:$spec" -- "$bin" "$n" "$threads" ;;
        few) "$UPREC" record -o "$out/trace.parquet" -e "$bin:$spec" -- "$bin" "$n" "$threads" "$warm" ;;
        untraced_warm) "$bin" "$n" "$threads" "$warm" ;;
        trap) "$UPREC" record --hit-path trap -o "$out/trace.parquet" -e "$bin:$spec" -- "$bin" "$n" "$threads" ;;
        idle) "$UPREC" record --hit-path trap --idle-tracer -o "$out/trace.parquet" -e "$bin:$spec" -- "$bin" "$n" "$threads" ;;
        filtered) "$UPREC" record -o "$out/trace.parquet" -e "$bin:$spec" --filter 'comm == "no-such-comm"' \
            -- "$bin" "$n" "$threads" ;;
        uftrace) "$uftrace" record --no-libcall -d "$out/uftrace.data" -P '^func$' "$uftrace_bin" "$n" "$threads" ;;
        perf) "$perf" record -q -o "$out/perf.data" "${events[@]}" -- "$bin" "$n" "$threads" ;;
    esac
}

# loop_ns of one run, or NA (the reason on stderr).
loop_ns_of() {
    local result
    if ! result="$(run_row "$@" 2>"$work/last.err")"; then
        echo "failed: $* ($(tail -1 "$work/last.err"))" >&2
        echo NA
        return
    fi
    awk '$1 == "loop_ns" { print $2 }' <<<"$result"
}

# "median min max" of the numbers on stdin, NA when any is NA.
stats() {
    sort -g | awk '{ v[NR] = $1; if ($1 == "NA") na = 1 }
        END { if (na || NR == 0) print "NA"; else print v[int((NR + 1) / 2)], v[1], v[NR] }'
}

# Median untraced loop_ns per "BASELINE-ROW,THREADS,CALLS", measured once each, when first
# needed. Call ensure_baseline directly, not in $(...): a subshell would lose what it measured.
declare -A base_cache
ensure_baseline() { # BASELINE-ROW THREADS CALLS
    if [ -z "${base_cache[$1,$2,$3]:-}" ]; then
        local s
        s=$(for _ in $(seq "$repeats"); do loop_ns_of "$1" entry "$2" "$3"; done | stats)
        base_cache[$1,$2,$3]=${s%% *}
    fi
}

per_hit() { # LOOP_NS BASE_NS CALLS THREADS -> ns/hit
    awk -v t="$1" -v b="$2" -v n="$3" -v k="$4" 'BEGIN { printf "%.1f", (t - b) / (n * k) }'
}

declare -A cell spread used kept
columns=("entry 1" "entry 2" "return 1" "return 2")

# Fills cell/spread/used for ROW in every column.
measure_row() {
    local row=$1 col mode threads n base s lo hi median
    for col in "${columns[@]}"; do
        read -r mode threads <<<"$col"
        case "$row" in
            trap | idle | perf) n=$slow_calls ;;
            uftrace) n=$uftrace_calls ;;
            few)
                # A call of a %return probe writes two records: half the calls fill the ring as much.
                n=$few_calls warm=$warmup_calls
                if [ "$mode" = return ]; then n=$((few_calls / 2)) warm=$((warmup_calls / 2)); fi
                ;;
            *)
                n=$calls
                local probe
                probe=$(loop_ns_of "$row" "$mode" "$threads" "$slow_calls")
                ensure_baseline untraced "$threads" "$slow_calls"
                if [ "$probe" = NA ] || [ "$(awk -v c="$(per_hit "$probe" "${base_cache[untraced,$threads,$slow_calls]}" "$slow_calls" "$threads")" \
                    -v lim="$stopping_ns" 'BEGIN { print (c > lim) }')" = 1 ]; then
                    n=$slow_calls
                fi
                ;;
        esac
        local base_row=untraced
        if [ "$row" = uftrace ] && [ "$uftrace_bin" != "$bin" ]; then base_row=untraced_fentry; fi
        if [ "$row" = few ]; then base_row=untraced_warm; fi
        ensure_baseline "$base_row" "$threads" "$n"
        base=${base_cache[$base_row,$threads,$n]}
        local runs=() rates=() loop
        for _ in $(seq "$repeats"); do
            loop=$(loop_ns_of "$row" "$mode" "$threads" "$n")
            runs+=("$loop")
            if { [ "$row" = uprec ] || [ "$row" = few ]; } && [ "$loop" != NA ]; then
                rates+=("$(samples_kept "$loop")")
            fi
        done
        s=$(printf '%s\n' "${runs[@]}" | stats)
        used[$row,$col]=$n
        if [ "$s" = NA ]; then
            cell[$row,$col]=NA
            continue
        fi
        read -r median lo hi <<<"$s"
        cell[$row,$col]=$(per_hit "$median" "$base" "$n" "$threads")
        spread[$row,$col]="$(per_hit "$lo" "$base" "$n" "$threads")..$(per_hit "$hi" "$base" "$n" "$threads")"
        if [ "${#rates[@]}" -gt 0 ]; then
            # Median over runs of "M/s lost%": sorted by the rate.
            kept[$row,$col]=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }')
        fi
    done
}

# LOOP_NS of the run just made -> "MILLIONS_PER_S LOST_PERCENT" from its trace's report.
samples_kept() {
    local json
    if ! json=$("$UPREC" report -i "$out/trace.parquet" --format json 2>>"$work/last.err"); then
        echo "NA NA"
        return
    fi
    jq -r --argjson ns "$1" '[.probes[] | select(.name == "func")][0]
        | "\(((.count - .lost) / ($ns / 1e9) / 1e6 * 10 | round) / 10) \(if .count > 0 then (.lost * 1000 / .count | round) / 10 else 0 end)"' <<<"$json"
}

rows=(untraced uprec few trap)
if [ "${IDLE_TRACER:-0}" = 1 ]; then rows+=(idle); fi
rows+=(filtered)
if [ "$have_uftrace" = 1 ]; then rows+=(uftrace); fi
if [ "$have_perf" = 1 ]; then rows+=(perf); fi

declare -A label=(
    [untraced]="untraced (ns/call)"
    [uprec]="uprec (default path)"
    [few]="uprec default, ring not full"
    [trap]="uprec --hit-path trap"
    [idle]="uprec trap --idle-tracer"
    [filtered]="uprec, filtered out"
    [uftrace]="uftrace -P func"
    [perf]="perf record (kernel uprobe)"
)

echo "hitcost: median of $repeats runs, $(nproc) CPUs, kernel $(uname -r), uprec $build; ns per hit (entry+return: per call)" >&2
for row in "${rows[@]}"; do
    if [ "$row" = untraced ]; then
        for col in "${columns[@]}"; do
            read -r _ threads <<<"$col"
            ensure_baseline untraced "$threads" "$calls"
            cell[untraced,$col]=$(awk -v t="${base_cache[untraced,$threads,$calls]}" -v n="$calls" -v k="$threads" 'BEGIN { printf "%.2f", t / (n * k) }')
            used[untraced,$col]=$calls
        done
    else
        echo "measuring: ${label[$row]} ..." >&2
        measure_row "$row"
    fi
done

print_table() { # TITLE ARRAY-NAME [FORMAT]
    local -n values=$2
    printf '%-30s %17s %17s %17s %17s\n' "$1" "entry, 1 thread" "entry, 2 threads" "e+ret, 1 thread" "e+ret, 2 threads"
    for row in "${rows[@]}"; do
        printf '%-30s' "${label[$row]}"
        for col in "${columns[@]}"; do printf ' %17s' "${values[$row,$col]:--}"; done
        printf '\n'
    done
}

echo "hitcost: median of $repeats runs, $(nproc) CPUs, kernel $(uname -r), uprec $build"
print_table "ns per hit" cell
printf '%-30s' "uprec default: kept M/s"
for col in "${columns[@]}"; do printf ' %17s' "$(awk '{ print $1 }' <<<"${kept[uprec,$col]:-NA}")"; done
printf '\n%-30s' "uprec default: lost %"
for col in "${columns[@]}"; do printf ' %17s' "$(awk '{ print $2 }' <<<"${kept[uprec,$col]:-NA NA}")"; done
printf '\n%-30s' "ring not full: lost %"
for col in "${columns[@]}"; do printf ' %17s' "$(awk '{ print $2 }' <<<"${kept[few,$col]:-NA NA}")"; done
printf '\n\n'
print_table "calls per thread" used
echo
print_table "spread over runs (ns per hit)" spread
echo
echo "ns per hit = (traced loop - untraced loop) / (calls x threads); with 2 threads the loop is the"
echo "wall time of the parallel section (times 2: the cost of a hit as each of the two threads sees it)."
echo "Entry+return columns: one call (an entry and its return) is one hit."
if [ "$have_uftrace" = 1 ]; then
    echo "uftrace has no entry-only mode: it hooks the return as well in every column."
fi
echo "kept M/s = (count - lost) of a default-path run / loop seconds (uprec report --format json)."
for note in "${notes[@]}"; do echo "$note"; done
