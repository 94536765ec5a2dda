#!/usr/bin/env bash
# Runs every fuzz target for a fixed budget (seconds each, default 60) and
# writes fuzz/RESULTS.md: executions and findings per target. Not part of CI's
# default path. Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable
# toolchain is put in nightly mode with RUSTC_BOOTSTRAP=1, the only
# toolchain this project's machines have.
set -euo pipefail
cd "$(dirname "$0")"
budget=${1:-60}
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
out=RESULTS.md
{
    echo "# Fuzzing results"
    echo
    echo "$(date -u +%Y-%m-%d), ${budget}s per target, \`fuzz/run.sh $budget\`, libFuzzer via cargo-fuzz, $(nproc) cores."
    echo
    echo "| target | executions | exec/s | corpus | crashes |"
    echo "|---|---|---|---|---|"
} > "$out"
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    set +e
    cargo fuzz run --sanitizer none "$t" "corpus/$t" -- -max_total_time="$budget" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(ls "corpus/$t" | wc -l)
    crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    [ "$rc" = 0 ] || crashes="$crashes (exit $rc, see artifacts/$t)"
    echo "| $t | ${execs:-?} | ${rate:-?} | $corpus | $crashes |" >> "$out"
    echo "$t: ${execs:-?} executions, crashes: $crashes"
    rm -f "$log"
done
echo "wrote fuzz/$out"
