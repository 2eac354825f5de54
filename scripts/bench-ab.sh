#!/usr/bin/env bash
# Side-by-side benchmark of two commits in one run (BENCHMARKS.md: "compare as ratios
# measured in one run"). Builds BASE (a commit) in a temporary worktree and the current
# checkout, then runs the same bench of both, alternating BASE, HEAD, BASE, HEAD, ... ROUNDS
# times, so both see the same machine and the same noise.
#
#   scripts/bench-ab.sh BASE ROUNDS BENCH [ARGS...]
#   scripts/bench-ab.sh 2954d36 3 core_pipeline -- --warm-up-time 1 --measurement-time 3
#   scripts/bench-ab.sh 2954d36 3 end_to_end -- --repeat 1 --contenders rdkafka,record,batch
#
# Output: each run's output, prefixed `[BASE r]` / `[HEAD r]`. Build dirs are kept under
# $HOME/.cache (kstreams-bench-base-<commit>, and CARGO_TARGET_DIR or the default for HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?base commit}
rounds=${2:?rounds}
bench=${3:?bench name}
shift 3

base_sha=$(git rev-parse --short "$base")
worktree=$(mktemp -d "${TMPDIR:-/tmp}/kstreams-bench-base-XXXXXX")
trap 'git worktree remove --force "$worktree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach --quiet "$worktree" "$base_sha"
base_target="$HOME/.cache/kstreams-bench-base-$base_sha"

echo "building $bench at $base_sha (base) and at $(git rev-parse --short HEAD) (head)" >&2
(cd "$worktree" && CARGO_TARGET_DIR="$base_target" cargo bench -p kstreams-benches --bench "$bench" --no-run)
cargo bench -p kstreams-benches --bench "$bench" --no-run

for round in $(seq 1 "$rounds"); do
    (cd "$worktree" && CARGO_TARGET_DIR="$base_target" cargo bench -q -p kstreams-benches --bench "$bench" "$@" 2>&1) \
        | sed "s/^/[BASE $round] /"
    cargo bench -q -p kstreams-benches --bench "$bench" "$@" 2>&1 | sed "s/^/[HEAD $round] /"
done
