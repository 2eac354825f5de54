#!/usr/bin/env bash
# Prints a PATH under which the named commands do not exist: every PATH directory holding one
# of them is replaced by a directory of links to its other programs (under
# ${TMPDIR:-/tmp}/kstreams-path-without-<uid>). Used by .ci/run to show that a build does
# not need `cmake`.
#
# Usage: PATH=$(scripts/path-without.sh cmake [OTHER...])
set -euo pipefail
(($#)) || { echo "usage: $0 COMMAND..." >&2; exit 2; }
root=${TMPDIR:-/tmp}/kstreams-path-without-$(id -u)
rm -rf "$root" && mkdir -p "$root"
out=() n=0
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
    hides=0
    for name in "$@"; do [ -e "$dir/$name" ] && hides=1; done
    if ((hides == 0)); then out+=("$dir"); continue; fi
    n=$((n + 1))
    copy=$root/$n
    mkdir -p "$copy"
    for entry in "$dir"/*; do
        base=${entry##*/}
        skip=0
        for name in "$@"; do [ "$base" = "$name" ] && skip=1; done
        ((skip)) || ln -s "$entry" "$copy/$base"
    done
    out+=("$copy")
done
(IFS=:; echo "${out[*]}")
