#!/usr/bin/env bash
# Installs the Tansu 0.6.0 broker used by the end-to-end tests (tests/src/tansu.rs) and the
# end-to-end benchmark. Skipped when the pinned version is already installed. Newer releases
# need a newer rustc than this project's 1.95 (docs/decisions.md).
#
# The binary lands in $KSTREAMS_TOOLS_DIR/bin (default $HOME/.cache/kstreams-tools/bin), which
# is where the test harness looks first; KSTREAMS_TANSU overrides the path at test time.
set -euo pipefail

version=0.6.0
root="${KSTREAMS_TOOLS_DIR:-$HOME/.cache/kstreams-tools}"
bin="$root/bin/tansu"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
    echo "tansu $version already installed at $bin" >&2
    exit 0
fi

echo "installing tansu $version into $root (about 12 minutes on 2 cores)" >&2
# A build directory of its own, kept so that an interrupted install resumes.
CARGO_TARGET_DIR="$root/build" cargo install --locked --root "$root" \
    "tansu@$version" --no-default-features --features dynostore
"$bin" --version >&2
