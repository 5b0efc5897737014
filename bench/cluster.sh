#!/usr/bin/env bash
# bench/cluster.sh: the relay on one machine with each store (issue 18), in
# one run: one node on SQLite, one node on NATS JetStream, two nodes on
# NATS JetStream (one key, clients spread over both).
#
#   bash bench/cluster.sh            # the full run (about 3 minutes)
#   QUICK=1 bash bench/cluster.sh    # shorter loads, to try the script
#   KEEP=1 ...                        # keep the work directory (logs, raw)
#
# For each: deliveries/s and server CPU per delivery of the open-room
# fan-out flood (50 clients x 200 messages x 100 bytes, the load of
# bench/compare.sh), acknowledged durable messages/s (4 senders, 64 in
# flight each, 100 bytes, 4 recipients' stored queues; with two nodes the
# senders and recipients are on different nodes), and each process's RSS
# after the load. Servers (relay nodes and nats-server) are pinned to
# core 0, the load generator to core 1. Writes bench/cluster.json (OUT=...
# to change) and prints a table. Every address is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/cluster.json}
QUICK=${QUICK:-0}
WORK=$(mktemp -d /tmp/cipherline-cluster.XXXXXX)
RAW=$WORK/raw
mkdir -p "$RAW"
SERVER_CORE=0
GEN_CORE=1
if [ "$QUICK" = 1 ]; then FAN_MSGS=50; DUR_MSGS=500; else FAN_MSGS=200; DUR_MSGS=2500; fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ n += $1 } END { printf "%.0f\n", n }'; }

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  log "installing nats-server"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server
fi
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)

log "building release binaries"
cargo build --release --locked -q -p cipherline -p cipherline-bench
CL=$ROOT/target/release/cipherline
BENCH=$ROOT/target/release/cipherline-bench
ulimit -n "$(ulimit -Hn)"
export CIPHERLINE_HOME=$WORK/home
mkdir -p "$CIPHERLINE_HOME"
"$CL" keygen --type rsa --bits 2048 --out "$WORK/key" >/dev/null

# A relay node with the rate limits lifted (the load is one address), as
# bench/compare.sh runs it. start_node NAME [STORE]: sets NODE_PID, NODE_PORT.
start_node() {
  local name=$1 store=${2:-}
  NODE_PORT=$(free_port)
  {
    printf 'listen = "127.0.0.1:%s"\nkey = "%s"\n' "$NODE_PORT" "$WORK/key"
    [ -z "$store" ] || printf 'store = "%s"\n' "$store"
    cat <<EOF
[limits]
max_handshakes_per_ip = 1024
max_sessions_per_ip = 1024
reserved_for_new_addresses_percent = 0
new_connections_per_ip_per_sec = 1000000
new_connections_burst_per_ip = 1000000
messages_per_sec = 1000000
burst = 1000000
bytes_per_sec = 1000000000000
bytes_burst = 1000000000000
queue_len = 10000
EOF
  } >"$WORK/$name.toml"
  RUST_LOG=warn taskset -c $SERVER_CORE "$CL" serve --config "$WORK/$name.toml" --data-dir "$WORK/$name" \
    >"$WORK/$name.out" 2>>"$WORK/$name.err" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_port "$NODE_PORT"
  for _ in $(seq 100); do grep -q '^fingerprint:' "$WORK/$name.out" && break; sleep 0.1; done
  FP=$(awk '/^fingerprint:/ { print $2 }' "$WORK/$name.out")
}
start_nats() { # sets NATS_PID, NATS_URL
  local port
  port=$(free_port)
  rm -rf "$WORK/jetstream"
  # The relay's store needs a payload of a full stored message (docs/cluster.md).
  printf 'listen: "127.0.0.1:%s"\nmax_payload: 2MB\njetstream { store_dir: "%s" }\n' "$port" "$WORK/jetstream" \
    >"$WORK/nats.conf"
  taskset -c $SERVER_CORE "$NATS" -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
  NATS_PID=$!
  PIDS+=("$NATS_PID")
  wait_port "$port"
  NATS_URL="nats://127.0.0.1:$port"
}
gen() { taskset -c $GEN_CORE "$BENCH" "$@" --server-fingerprint "$FP" --json; }
fan_args=(--clients 50 --messages "$FAN_MSGS" --size 100 --timeout 120)
dur_args=(--senders 4 --messages "$DUR_MSGS" --size 100 --window 64 --recipients 4 --timeout 300)
nats_rss() { echo "{\"nats_server_rss_kib\": $(rss_kib "$NATS_PID")}"; }
# with_nats OUT CMD...: runs CMD, then adds nats-server's CPU during it to OUT.
with_nats() {
  local out=$1 before after
  shift
  before=$(cpu_ns "$NATS_PID")
  "$@" >"$out" || true
  after=$(cpu_ns "$NATS_PID")
  python3 - "$out" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    d = json.loads(open(path).readline() or "{}")
except ValueError:
    d = {}
d["nats_server_cpu_secs"] = round((after - before) / 1e9, 3)
open(path, "w").write(json.dumps(d) + "\n")
PY
}

# --- 1. one node, SQLite ------------------------------------------------------
start_node sqlite
log "one node on SQLite: fan-out flood"
gen fanout "${fan_args[@]}" --server "127.0.0.1:$NODE_PORT" --server-pid "$NODE_PID" >"$RAW/sqlite_fan.json" || true
log "one node on SQLite: durable"
gen durable "${dur_args[@]}" --server "127.0.0.1:$NODE_PORT" --server-pid "$NODE_PID" >"$RAW/sqlite_dur.json" || true
stop "$NODE_PID"

# --- 2. one node, NATS ----------------------------------------------------------
start_nats
start_node nats1 "$NATS_URL"
log "one node on NATS: fan-out flood"
with_nats "$RAW/nats1_fan.json" gen fanout "${fan_args[@]}" --server "127.0.0.1:$NODE_PORT" --server-pid "$NODE_PID"
log "one node on NATS: durable"
with_nats "$RAW/nats1_dur.json" gen durable "${dur_args[@]}" --server "127.0.0.1:$NODE_PORT" --server-pid "$NODE_PID"
nats_rss >"$RAW/nats1_nats.json"
stop "$NODE_PID"
stop "$NATS_PID"

# --- 3. two nodes, NATS ---------------------------------------------------------
start_nats
start_node nats2a "$NATS_URL"
A_PID=$NODE_PID A_PORT=$NODE_PORT
start_node nats2b "$NATS_URL"
B_PID=$NODE_PID B_PORT=$NODE_PORT
two=(--server "127.0.0.1:$A_PORT" --server-pid "$A_PID" --node "127.0.0.1:$B_PORT" --node-pid "$B_PID")
log "two nodes on NATS: fan-out flood"
with_nats "$RAW/nats2_fan.json" gen fanout "${fan_args[@]}" "${two[@]}"
log "two nodes on NATS: durable"
with_nats "$RAW/nats2_dur.json" gen durable "${dur_args[@]}" "${two[@]}"
nats_rss >"$RAW/nats2_nats.json"
stop "$A_PID"
stop "$B_PID"
stop "$NATS_PID"

# --- the table --------------------------------------------------------------------
python3 - "$RAW" "$OUT" "$(git rev-parse --short HEAD)" "$(date -u +%Y-%m-%dT%H:%MZ)" <<'EOF'
import json, os, sys
raw, out, commit, when = sys.argv[1:5]
def load(name):
    try:
        with open(os.path.join(raw, name)) as f:
            return json.loads(f.readline() or "{}")
    except (OSError, ValueError):
        return {}
rows = []
for key, label in [("sqlite", "one node, SQLite"), ("nats1", "one node, NATS"), ("nats2", "two nodes, NATS")]:
    fan, dur, nats = load(f"{key}_fan.json"), load(f"{key}_dur.json"), load(f"{key}_nats.json")
    def with_nats(d, count, per):
        # Relay nodes' CPU plus nats-server's, per delivery or message.
        cpu = (d.get("server_cpu_secs") or 0) + (d.get("nats_server_cpu_secs") or 0)
        n = d.get(count) or 0
        return round(cpu * 1e6 / n, 3) if n else None
    rows.append({
        "fanout_all_cpu_us_per_delivery": with_nats(fan, "deliveries", 1),
        "durable_all_cpu_us_per_message": with_nats(dur, "acked", 1),
        "setup": label,
        "deliveries_per_sec": fan.get("deliveries_per_sec"),
        "fanout_server_cpu_us_per_delivery": fan.get("server_cpu_us_per_delivery"),
        "fanout_ok": fan.get("ok"),
        "durable_acked_per_sec": dur.get("acked_per_sec"),
        "durable_server_cpu_us_per_message": dur.get("server_cpu_us_per_message"),
        "durable_ok": dur.get("ok"),
        "node_rss_kib": dur.get("server_rss_kib_per_node") or fan.get("server_rss_kib_per_node"),
        "nats_server_rss_kib": nats.get("nats_server_rss_kib"),
        "raw": {"fanout": fan, "durable": dur},
    })
with open(out, "w") as f:
    json.dump({"commit": commit, "when": when, "rows": rows}, f, indent=1)
print("| setup | deliveries/s | CPU µs/delivery: nodes (+ nats-server) | durable acked/s | CPU µs/message: nodes (+ nats-server) | RSS per node (KiB) | nats-server RSS (KiB) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['setup']} | {r['deliveries_per_sec']:,.0f} | {r['fanout_server_cpu_us_per_delivery']} "
          f"({r['fanout_all_cpu_us_per_delivery']}) | {r['durable_acked_per_sec']:,.0f} | "
          f"{r['durable_server_cpu_us_per_message']} ({r['durable_all_cpu_us_per_message']}) | "
          f"{', '.join(map(str, r['node_rss_kib'] or []))} | {r['nats_server_rss_kib'] or '-'} |")
EOF
