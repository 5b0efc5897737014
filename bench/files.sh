#!/usr/bin/env bash
# File-transfer throughput through a local relay, with the release binary
# (issue 16; results go to BENCHMARKS.md by hand):
#
#   v1 live       the version-1 path: relay-readable, both online, no relay
#                 storage (sender without an identity key, receiver listening)
#   e2e live      end to end: `listen --accept-files` running while `send
#                 --file` uploads; the receiver follows the upload as the relay
#                 stores it (what two online users see)
#   e2e upload    end to end, recipient offline: the upload alone (the relay
#                 writes every byte to disk, flushed at the end)
#   e2e download  the recipient comes online later and fetches the stored blob
#
# Each figure is the file size over the wall time of the command(s), from
# start to the file saved and verified (SHA-256) at the receiver. Usage:
#   bash bench/files.sh [SIZE_MIB]      (default 1024)
set -euo pipefail

size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p cipherline --manifest-path "$root/Cargo.toml"
bin=$root/target/release/cipherline

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" keygen --type x25519 --out "$work/server_key" >/dev/null
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/server" --key "$work/server_key" >"$work/server.out" 2>/dev/null &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^clients check' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
fingerprint=$(sed -n 's/^fingerprint: //p' "$work/server.out" | head -1)
addr=$(sed -n 's/^cipherline server listening on //p' "$work/server.out" | head -1)
[ -n "$fingerprint" ] && [ -n "$addr" ] || { echo "the server did not start" >&2; cat "$work/server.out" >&2; exit 1; }

client() { # client SUBCOMMAND NAME ARGS...
    local sub=$1 name=$2
    shift 2
    CIPHERLINE_HOME="$work/home-$name" "$bin" "$sub" --server "$addr" --name "$name" \
        --server-fingerprint "$fingerprint" "$@"
}

file=$work/data.bin
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
want=$(sha256sum "$file" | cut -d' ' -f1)

now() { date +%s.%N; }
# The relay's CPU seconds so far (user + system), from /proc.
server_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$server_pid/stat"
}
rate() { # rate START END CPU_START CPU_END
    python3 -c "import sys; s,e,c0,c1=map(float,sys.argv[1:5]); print(f'{$size_mib/(e-s):8.1f} MiB/s  ({e-s:.2f} s; relay CPU {c1-c0:.2f} s)')" "$1" "$2" "$3" "$4"
}
check() { # check DIR
    local got
    got=$(find "$1" -maxdepth 1 -type f -name 'data*' -exec sha256sum {} + | cut -d' ' -f1 | head -1)
    [ "$got" = "$want" ] || { echo "received file differs (got ${got:-nothing})" >&2; exit 1; }
    rm -rf "$1"
}

# Everyone connects once (their keys own their names; key packages published).
client listen bob --timeout 1 >/dev/null
client listen alice --timeout 1 >/dev/null

echo "file: $size_mib MiB of random bytes; relay and both clients on this machine ($(nproc) cores)"

# v1 live: a receiver without identity key cannot take part in MLS, so the
# file goes the version-1 way.
mkdir -p "$work/in-v1"
client listen carol --no-identity --accept-files "$work/in-v1" --max-file-size 64G --max-total 64G \
    --count 1 --timeout 600 >/dev/null 2>&1 &
listener=$!
sleep 1
start=$(now); cpu0=$(server_cpu)
client send dave --no-identity --to carol --file "$file" >/dev/null 2>&1
wait "$listener"
end=$(now); cpu1=$(server_cpu)
printf 'v1 live       %s\n' "$(rate "$start" "$end" "$cpu0" "$cpu1")"
check "$work/in-v1"

# e2e live.
mkdir -p "$work/in-live"
client listen bob --accept-files "$work/in-live" --max-file-size 64G --max-total 64G --count 1 --timeout 600 \
    >/dev/null 2>&1 &
listener=$!
sleep 1
start=$(now); cpu0=$(server_cpu)
client send alice --to bob --file "$file" >/dev/null 2>&1
wait "$listener"
end=$(now); cpu1=$(server_cpu)
printf 'e2e live      %s\n' "$(rate "$start" "$end" "$cpu0" "$cpu1")"
check "$work/in-live"

# e2e stored: upload while bob is offline, then bob downloads.
start=$(now); cpu0=$(server_cpu)
client send alice --to bob --file "$file" >/dev/null 2>&1
end=$(now); cpu1=$(server_cpu)
printf 'e2e upload    %s\n' "$(rate "$start" "$end" "$cpu0" "$cpu1")"
mkdir -p "$work/in-later"
start=$(now); cpu0=$(server_cpu)
client listen bob --accept-files "$work/in-later" --max-file-size 64G --max-total 64G --count 1 --timeout 600 \
    >/dev/null 2>&1
end=$(now); cpu1=$(server_cpu)
printf 'e2e download  %s\n' "$(rate "$start" "$end" "$cpu0" "$cpu1")"
check "$work/in-later"
