#!/usr/bin/env bash
# Installs crabka-broker 0.3.0, the Kafka-compatible broker (written in Rust) that the
# exactly-once tests run on: it serves transactions (EndTxn, TxnOffsetCommit, read_committed
# fetches with aborted-transaction lists, fencing), classic groups and CreateTopics, which
# neither Tansu 0.6.0 nor librdkafka's mock cluster does completely (docs/decisions.md §9).
# Skipped when the binary is already there; the harness is tests/src/crabka.rs.
#
# Why a lock file: 0.3.0 is the newest release that builds with this project's rustc 1.95,
# and all of its releases are yanked, so cargo resolves it only from a lock file that already
# names it. crabka-broker-0.3.0.lock beside this script pins the crabka-* crates with the
# versions and checksums of the crates.io index. (Adapted from the team's shared tool notes,
# tools/crabka/install.sh, so that CI needs nothing outside the clone.)
#
# The binary lands in $KSTREAMS_TOOLS_DIR/bin (default $HOME/.cache/kstreams-tools/bin), where
# the harness looks first; KSTREAMS_CRABKA overrides the path at test time.
# About 11 minutes on 2 cores.
set -euo pipefail

version=0.3.0
here=$(cd "$(dirname "$0")" && pwd)
root="${KSTREAMS_TOOLS_DIR:-$HOME/.cache/kstreams-tools}"
bin="$root/bin/crabka-broker"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; then
    echo "crabka-broker $version already installed at $bin" >&2
    exit 0
fi

# A throwaway crate that depends on crabka-broker, with the pinning lock file, lets cargo
# download the yanked crate; the broker is then built from that source with the Cargo.lock it
# ships. The directories are fixed (not temporary) so that an interrupted install resumes.
wrap="$root/crabka-download"
src="$root/crabka-broker-src"
rm -rf "$wrap" "$src"
mkdir -p "$wrap/src"
cat >"$wrap/Cargo.toml" <<TOML
[package]
name = "crabka-download"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
crabka-broker = "=$version"

[workspace]
TOML
echo 'fn main() {}' >"$wrap/src/main.rs"
# Not --locked: cargo adds the dependencies the lock file leaves out and keeps its pins.
cp "$here/crabka-broker-$version.lock" "$wrap/Cargo.lock"
(cd "$wrap" && cargo fetch -q)

manifest=$(cd "$wrap" && cargo metadata --format-version 1 \
    | grep -o "\"manifest_path\":\"[^\"]*/crabka-broker-$version/Cargo.toml\"" \
    | head -n 1 | sed 's/^"manifest_path":"//; s/"$//' || true)
[ -n "$manifest" ] || { echo "crabka-broker $version source not found after cargo fetch" >&2; exit 1; }
cp -r "$(dirname "$manifest")" "$src"

echo "installing crabka-broker $version into $root (about 11 minutes on 2 cores)" >&2
# opt-level 1 and no debug info: the build takes about half as long, and the tests need no
# more speed than that.
CARGO_TARGET_DIR="$root/build-crabka" CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo install --locked --path "$src" --root "$root"
rm -rf "$root/build-crabka" "$wrap" "$src"
"$bin" --version >&2
