#!/bin/sh
# tools/fuzz.sh — run the libFuzzer harnesses of tests/fuzz (built by
# `make fuzz-build` into $FUZZ_BUILD, default build/fuzz).
#
#   tools/fuzz.sh run [TARGET...]      fuzz each target for FUZZ_SECONDS (60) seconds
#                                      on its seed corpus, then replay its regression
#                                      inputs; new inputs go to $FUZZ_BUILD/work/<t>,
#                                      crashes to $FUZZ_BUILD/artifacts/<t>/
#   tools/fuzz.sh regress [TARGET...]  replay regressions and seeds once through the
#                                      standalone (gcc + ASan) builds replay-<t>
#   tools/fuzz.sh merge [TARGET...]    fold $FUZZ_BUILD/work/<t> into the committed
#                                      corpus, keeping only inputs that reach new edges
#
# Exit status 0 only when no target crashed, leaked, timed out or broke an
# invariant.  The last line is "fuzz: N passed, M failed".
set -u
cd "$(dirname "$0")/.."

mode=${1:-run}
[ $# -gt 0 ] && shift
targets=${*:-ws_frame ws_deflate publish_json values api_request link store token}
build=${FUZZ_BUILD:-build/fuzz}
seconds=${FUZZ_SECONDS:-60}
fuzzdir=tests/fuzz
passed=0
failed=0
summary=""

# Longest input each target takes (the store's journals and the frame
# parser's streams need more room than a header value).
max_len() {
    case $1 in
        store|ws_frame|api_request|link) echo 16384 ;;
        token) echo 8192 ;;       # past PUSH_TOKEN_MAX (4096)
        *) echo 4096 ;;
    esac
}

fail() {
    failed=$((failed + 1))
    summary="$summary
  $1: FAILED ($2)"
}

pass() {
    passed=$((passed + 1))
    summary="$summary
  $1: ok${2:+ ($2)}"
}

# Replay every file of a directory once (libFuzzer: -runs=0 runs the corpus only).
replay_dir() {   # bin dir log
    [ -d "$2" ] || return 0
    [ -n "$(ls -A "$2" 2>/dev/null)" ] || return 0
    "$1" -runs=0 -rss_limit_mb=2048 -timeout=30 "$2" >>"$3" 2>&1
}

check_clang() {
    for t in $targets; do
        if [ ! -x "$build/$t" ]; then
            echo "fuzz: $build/$t is missing: run 'make fuzz-build' (needs clang with libFuzzer:" >&2
            echo "      apt-get install -y clang libclang-rt-14-dev)" >&2
            exit 2
        fi
    done
}

run_one() {
    t=$1
    bin=$build/$t
    work=$build/work/$t
    art=$build/artifacts/$t
    logs=$build/logs
    log=$logs/$t.log
    mkdir -p "$work" "$art" "$logs"
    : >"$log"
    dict=""
    [ -f "$fuzzdir/dict/$t.dict" ] && dict="-dict=$fuzzdir/dict/$t.dict"
    echo "== fuzz $t for ${seconds}s (log: $log)"
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$art/" \
        $dict "$work" "$fuzzdir/corpus/$t" >>"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*\(cov: [0-9]*\).*\(corp: [^ ]*\).*/\1 \2/p')
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR: |runtime error|fuzz invariant failed|SUMMARY|Test unit written' "$log" | head -20
        fail "$t" "exit $rc; input saved in $art/; see $log"
        return
    fi
    # the regression inputs must pass
    if ! replay_dir "$bin" "$fuzzdir/regressions/$t" "$log"; then
        grep -E 'ERROR: |runtime error|fuzz invariant failed|SUMMARY' "$log" | tail -20
        fail "$t" "a regression input fails; see $log"
        return
    fi
    pass "$t" "${execs:-?} runs, ${rate:-?} exec/s, ${cov:-}"
}

regress_one() {
    t=$1
    bin=$build/replay-$t
    dirs=""
    for d in "$fuzzdir/regressions/$t" "$fuzzdir/corpus/$t"; do
        [ -d "$d" ] && dirs="$dirs $d"
    done
    echo "== replay $t (regressions and seeds, standalone build)"
    # shellcheck disable=SC2086
    if [ -n "$dirs" ] && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
       UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
       "$bin" $dirs; then
        pass "$t" ""
    else
        fail "$t" "replay failed"
    fi
}

merge_one() {
    t=$1
    bin=$build/$t
    [ -d "$build/work/$t" ] || { pass "$t" "nothing to merge"; return; }
    mkdir -p "$fuzzdir/corpus/$t"
    before=$(ls "$fuzzdir/corpus/$t" | wc -l)
    # edges only (no hit-count buckets): a few new inputs, not thousands
    if "$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$t")" \
        "$fuzzdir/corpus/$t" "$build/work/$t" \
        >"$build/logs/$t.merge.log" 2>&1; then
        pass "$t" "$before -> $(ls "$fuzzdir/corpus/$t" | wc -l) inputs"
    else
        fail "$t" "merge failed; see $build/logs/$t.merge.log"
    fi
}

case $mode in
    run)     check_clang; for t in $targets; do run_one "$t"; done ;;
    regress) for t in $targets; do regress_one "$t"; done ;;
    merge)   check_clang; mkdir -p "$build/logs"; for t in $targets; do merge_one "$t"; done ;;
    *)       echo "usage: $0 run|regress|merge [TARGET...]" >&2; exit 2 ;;
esac

echo "fuzz summary:$summary"
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
