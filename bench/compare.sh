#!/usr/bin/env bash
# bench/compare.sh: cipherline measured against its limits and against what
# people would use instead, in one run on this machine (issue 9).
#
#   bash bench/compare.sh            # the full run (about 8 minutes)
#   QUICK=1 bash bench/compare.sh    # shorter loads, to try the script
#   WAIT_QUIET=60 ...                 # wait up to 60 s for an idle machine
#   KEEP=1 ...                        # keep the work directory (logs, raw)
#
# Installs what it needs from Debian's packages, builds release binaries,
# pins every server to core 0 (taskset -c 0) and every load generator to
# core 1, raises the file-descriptor limit, and runs: openssl speed rsa2048,
# cipherline handshakes for each suite, openssl s_server/s_time TLS 1.3 with
# the same RSA-2048 key, room fan-out against ngircd (plaintext, and TLS
# through stunnel) with flood limits lifted, bulk relay against iperf3, and
# the server's RSS at 1,000 and 10,000 idle connections, and acknowledged
# durable messages against NATS JetStream, the same fan-out in an
# end-to-end room against the open room, and the client's CPU for an MLS
# commit adding one member to 1,000 (cargo bench). Prints a table of
# ratios and writes everything as JSON to bench/results.json (OUT=... to
# change). Every load is bounded in count and time and stops by itself;
# every address is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/results.json}
QUICK=${QUICK:-0}
WORK=$(mktemp -d /tmp/cipherline-compare.XXXXXX)
RAW=$WORK/raw
mkdir -p "$RAW"
SERVER_CORE=0
GEN_CORE=1

if [ "$QUICK" = 1 ]; then
  HS_SECS=2; TLS_SECS=2; SPEED_SECS=1; BULK_BYTES=$((256 << 20)); IPERF_SECS=2; FAN_MSGS=50; IDLE_BIG=2000
  DUR_MSGS=500
else
  HS_SECS=5; TLS_SECS=5; SPEED_SECS=5; BULK_BYTES=$((2 << 30)); IPERF_SECS=5; FAN_MSGS=200; IDLE_BIG=10000
  DUR_MSGS=2500
fi
FAN_CLIENTS=50
FAN_SIZE=100
FAN_RATE=20

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# --- what this needs ------------------------------------------------------
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || need+=(ngircd)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || need+=(stunnel4)
command -v taskset >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v cc >/dev/null || need+=(gcc libc6-dev)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -q
  # policy-rc.d 101: do not start the packages' own services (ngircd,
  # stunnel) on install; this script starts its own, on its own ports.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
  [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
NGIRCD=$(command -v ngircd || echo /usr/sbin/ngircd)
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
STUNNEL=$(command -v stunnel4 || command -v stunnel)

log "building release binaries"
cargo build --release --locked -q -p cipherline -p cipherline-bench
CL=$ROOT/target/release/cipherline
BENCH=$ROOT/target/release/cipherline-bench

ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE_BIG + 1000)) ] || IDLE_BIG=$(( $(ulimit -n) - 1000 ))

# --- keys -----------------------------------------------------------------
export CIPHERLINE_HOME=$WORK/home
mkdir -p "$CIPHERLINE_HOME"
openssl genrsa -out "$WORK/rsa2048.pem" 2048 2>/dev/null
chmod 600 "$WORK/rsa2048.pem"
openssl req -x509 -new -key "$WORK/rsa2048.pem" -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -days 2 -out "$WORK/cert.pem" 2>/dev/null
"$CL" keygen --type rsa --bits 3072 --out "$WORK/rsa3072" >/dev/null
"$CL" keygen --type x25519 --out "$WORK/x25519" >/dev/null

# The relay with its message- and byte-rate limits lifted, as ngircd's flood
# protection is, a queue long enough for the flood (50 x 200 messages), and
# room for every connection of the load (all from 127.0.0.1, so the
# per-address limits are lifted too: handshakes, sessions, the reserve for
# new addresses and the connection rate); size and time limits keep their
# defaults.
start_cipherline() { # start_cipherline KEY: sets SRV_PID, SRV_PORT, SRV_FP
  SRV_PORT=$(free_port)
  cat >"$WORK/server.toml" <<EOF
listen = "127.0.0.1:$SRV_PORT"
key = "$1"
[limits]
max_connections = $((IDLE_BIG + 100))
max_handshakes_per_ip = 1024
max_sessions_per_ip = $((IDLE_BIG + 100))
reserved_for_new_addresses_percent = 0
new_connections_per_ip_per_sec = 1000000
new_connections_burst_per_ip = 1000000
messages_per_sec = 1000000
burst = 1000000
bytes_per_sec = 1000000000000
bytes_burst = 1000000000000
queue_len = 10000
EOF
  RUST_LOG=warn taskset -c $SERVER_CORE "$CL" serve --config "$WORK/server.toml" \
    >"$WORK/serve.out" 2>>"$WORK/serve.err" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_port "$SRV_PORT"
  SRV_FP=$(awk '/^fingerprint:/ { print $2 }' "$WORK/serve.out")
}
gen() { taskset -c $GEN_CORE "$BENCH" "$@"; }
gen_cl() { gen "$@" --server "127.0.0.1:$SRV_PORT" --server-fingerprint "$SRV_FP" --server-pid "$SRV_PID" --json; }

# --- 0. is anything else using the machine? ---------------------------------
# Every figure per core is CPU time read from /proc, which other work on the
# same cores disturbs less than it disturbs wall-clock rates; record how busy
# the machine was anyway. WAIT_QUIET=SECS waits up to SECS for it to calm down.
busy_pct() { # busy_pct: percentage of both cores busy over one second
  local a b
  a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  python3 -c 'import sys; a=list(map(int,sys.argv[1:3])); b=list(map(int,sys.argv[3:5])); busy=b[0]-a[0]; idle=b[1]-a[1]; print(round(100*busy/max(busy+idle,1)))' $a $b
}
BUSY=$(busy_pct)
for _ in $(seq "${WAIT_QUIET:-0}"); do
  [ "$BUSY" -le 5 ] && break
  BUSY=$(busy_pct)
done
[ "$BUSY" -le 5 ] || log "warning: the machine was ${BUSY}% busy before the run; wall-clock rates will suffer"
echo "{\"busy_pct_before\": $BUSY}" >"$RAW/machine_busy.json"

# --- 1. private-key operations: the handshake limit ----------------------------
log "openssl speed rsa2048 (core $SERVER_CORE)"
taskset -c $SERVER_CORE openssl speed -seconds "$SPEED_SECS" rsa2048 2>/dev/null >"$RAW/speed.txt"
awk '/^rsa 2048 bits/ { printf "{\"sign_per_sec\": %s, \"verify_per_sec\": %s}\n", $6, $7 }' "$RAW/speed.txt" \
  >"$RAW/openssl_speed.json"
log "openssl speed ecdhx25519 (core $SERVER_CORE)"
taskset -c $SERVER_CORE openssl speed -seconds "$SPEED_SECS" ecdhx25519 2>/dev/null >"$RAW/speed_x25519.txt"
awk '/ecdh \(X25519\)/ { printf "{\"ops_per_sec\": %s}\n", $NF }' "$RAW/speed_x25519.txt" \
  >"$RAW/openssl_x25519.json"
# The same operation through the function the server's handshake calls
# (aws-lc's RSA-OAEP decryption), and X25519 for the X25519 key.
for k in rsa2048.pem rsa3072 x25519; do
  taskset -c $SERVER_CORE "$BENCH" private-op --key "$WORK/$k" --duration "$SPEED_SECS" --json \
    >"$RAW/privop_${k%.pem}.json"
done

# --- 2. cipherline handshakes, per suite ------------------------------------
handshakes() { # handshakes KEYFILE LABEL SUITE...
  local key=$1 label=$2
  shift 2
  start_cipherline "$key"
  for suite in "$@"; do
    log "cipherline handshakes: $label key, suite $suite"
    gen_cl handshake --suite "$suite" --concurrency 16 --duration "$HS_SECS" \
      >"$RAW/hs_${label}_${suite}.json" || true
  done
  stop "$SRV_PID"
}
handshakes "$WORK/rsa2048.pem" rsa2048 0x0121 0x0111 0x0122 0x0112
handshakes "$WORK/rsa3072" rsa3072 0x0121
handshakes "$WORK/x25519" x25519 0x0221 0x0211 0x0222 0x0212

# --- 3. TLS 1.3 handshakes with the same RSA-2048 key -----------------------
log "openssl s_server / s_time, TLS 1.3, RSA-2048 certificate"
TLS_PORT=$(free_port)
taskset -c $SERVER_CORE openssl s_server -quiet -accept "127.0.0.1:$TLS_PORT" -tls1_3 \
  -cert "$WORK/cert.pem" -key "$WORK/rsa2048.pem" -naccept 10000000 >/dev/null 2>&1 &
TLS_PID=$!
PIDS+=("$TLS_PID")
wait_port "$TLS_PORT"
t0=$(cpu_ticks $TLS_PID)
start=$(date +%s.%N)
# Two clients at once so the server is never waiting for the client.
st=()
for i in 1 2; do
  taskset -c $GEN_CORE openssl s_time -connect "127.0.0.1:$TLS_PORT" -new -tls1_3 -time "$TLS_SECS" \
    >"$RAW/s_time_$i.txt" 2>&1 &
  st+=($!)
done
wait "${st[@]}" || true
end=$(date +%s.%N)
t1=$(cpu_ticks $TLS_PID)
stop "$TLS_PID"
n=$(cat "$RAW"/s_time_*.txt | awk '/connections in [0-9.]+s;/ { n += $1 } END { print n + 0 }')
python3 - "$n" "$start" "$end" "$t0" "$t1" >"$RAW/tls13.json" <<'EOF'
import json, sys
n, start, end, t0, t1 = int(sys.argv[1]), *map(float, sys.argv[2:])
cpu = (t1 - t0) / 100
print(json.dumps({"handshakes": n, "secs": round(end - start, 3),
                  "handshakes_per_sec": round(n / (end - start), 1),
                  "server_cpu_secs": cpu,
                  "handshakes_per_server_cpu_sec": round(n / cpu, 1) if cpu else None}))
EOF

# --- 4. fan-out: cipherline against ngircd -----------------------------------
start_ngircd() { # sets IRC_PID, IRC_PORT, IRCS_PORT
  IRC_PORT=$(free_port)
  IRCS_PORT=$(free_port)
  cat >"$WORK/ngircd.conf" <<EOF
[Global]
Name = bench.invalid
Info = cipherline comparison
Listen = 127.0.0.1
Ports = $IRC_PORT
MotdPhrase = bench
PidFile = $WORK/ngircd.pid
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
[SSL]
Ports = $IRCS_PORT
CertFile = $WORK/cert.pem
KeyFile = $WORK/rsa2048.pem
EOF
  taskset -c $SERVER_CORE "$NGIRCD" --nodaemon --config "$WORK/ngircd.conf" >"$WORK/ngircd.log" 2>&1 &
  IRC_PID=$!
  PIDS+=("$IRC_PID")
  wait_port "$IRC_PORT"
  wait_port "$IRCS_PORT"
}
fan_args=(--clients $FAN_CLIENTS --messages "$FAN_MSGS" --size $FAN_SIZE --timeout 120)

start_cipherline "$WORK/rsa2048.pem"
log "fan-out, cipherline, flood"
gen_cl fanout "${fan_args[@]}" >"$RAW/fan_cl_flood.json" || true
log "fan-out, cipherline, paced at $FAN_RATE msg/s per client"
gen_cl fanout "${fan_args[@]}" --rate $FAN_RATE >"$RAW/fan_cl_paced.json" || true
stop "$SRV_PID"
# The same load in an end-to-end room, on a fresh server: keyed members,
# group messages of an MLS message's size through each member's stored
# queue (the relay never parses them; see the mode's doc).
start_cipherline "$WORK/rsa2048.pem"
log "fan-out, cipherline end-to-end room, flood"
gen_cl e2e-fanout "${fan_args[@]}" >"$RAW/fan_e2e_flood.json" || true
stop "$SRV_PID"

start_ngircd
irc() { gen fanout --protocol irc "${fan_args[@]}" --server-pid "$IRC_PID" --json "$@"; }
log "fan-out, ngircd plaintext, flood"
irc --server "127.0.0.1:$IRC_PORT" >"$RAW/fan_irc_flood.json" || true
log "fan-out, ngircd plaintext, paced"
irc --server "127.0.0.1:$IRC_PORT" --rate $FAN_RATE >"$RAW/fan_irc_paced.json" || true
# TLS: the generator speaks plain IRC to a local stunnel client (on the
# generator's core), which speaks TLS 1.3 to ngircd's TLS port.
TUN_PORT=$(free_port)
cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
[irc]
client = yes
accept = 127.0.0.1:$TUN_PORT
connect = 127.0.0.1:$IRCS_PORT
EOF
taskset -c $GEN_CORE "$STUNNEL" "$WORK/stunnel.conf" >"$WORK/stunnel.log" 2>&1 &
TUN_PID=$!
PIDS+=("$TUN_PID")
wait_port "$TUN_PORT"
log "fan-out, ngircd TLS (via stunnel), flood"
irc --server "127.0.0.1:$TUN_PORT" --name-prefix t >"$RAW/fan_ircs_flood.json" || true
log "fan-out, ngircd TLS (via stunnel), paced"
irc --server "127.0.0.1:$TUN_PORT" --name-prefix p --rate $FAN_RATE >"$RAW/fan_ircs_paced.json" || true
stop "$TUN_PID"
stop "$IRC_PID"

# --- 5. bulk relay against iperf3 --------------------------------------------
start_cipherline "$WORK/rsa2048.pem"
log "bulk relay, cipherline, $BULK_BYTES bytes"
gen_cl bulk --bytes "$BULK_BYTES" --timeout 120 >"$RAW/bulk_cl.json" || true
stop "$SRV_PID"
log "iperf3 single stream, ${IPERF_SECS}s"
IPERF_PORT=$(free_port)
taskset -c $SERVER_CORE iperf3 -s -p "$IPERF_PORT" -B 127.0.0.1 >/dev/null 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
wait_port "$IPERF_PORT"
gen_iperf() { taskset -c $GEN_CORE iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECS" -J; }
gen_iperf >"$RAW/iperf3_full.json" || true
stop "$IPERF_PID"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["end"]["sum_received"]; print(json.dumps({"bits_per_second": d["bits_per_second"], "mb_per_sec": round(d["bits_per_second"]/8e6, 1)}))' \
  "$RAW/iperf3_full.json" >"$RAW/iperf3.json" || echo '{}' >"$RAW/iperf3.json"

# --- 6. memory per idle connection ---------------------------------------------
idle() { # idle N: a fresh server, N idle connections, RSS read while held
  local n=$1
  start_cipherline "$WORK/rsa2048.pem"
  log "idle: $n connections"
  local fifo=$WORK/idle_$n.out
  # exec: $! is the generator itself, which SIGTERM stops.
  (exec taskset -c $GEN_CORE "$BENCH" idle --connections "$n" --concurrency 32 --hold 300 \
    --server "127.0.0.1:$SRV_PORT" --server-fingerprint "$SRV_FP" --server-pid "$SRV_PID" --json >"$fifo") &
  local gen_pid=$!
  PIDS+=("$gen_pid")
  for _ in $(seq 1200); do
    [ -s "$fifo" ] && break
    sleep 0.25
  done
  local rss
  rss=$(rss_kib "$SRV_PID")
  python3 - "$fifo" "$rss" "$n" >"$RAW/idle_$n.json" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).readline() or "{}")
d["server_rss_kib_read_by_harness"] = int(sys.argv[2])
print(json.dumps(d))
EOF
  stop "$gen_pid"
  stop "$SRV_PID"
}
idle 1000
idle "$IDLE_BIG"

# --- 7. acknowledged durable messages: the SQLite store against JetStream -----
# The same load on both: 4 connections, each with at most 64 messages
# awaiting their acknowledgement, 100-byte messages spread over 4
# recipients' queues (subjects). cipherline acknowledges a message once it
# is committed to SQLite (WAL, synchronous=FULL, group commit); JetStream
# once its file store took it (nats-server 2.9 writes through to the file
# but syncs to disk only every 2 minutes by default: see BENCHMARKS.md).
dur_args=(--senders 4 --messages "$DUR_MSGS" --size 100 --window 64 --recipients 4 --timeout 300)
start_cipherline "$WORK/rsa2048.pem"
log "durable, cipherline on SQLite"
gen_cl durable "${dur_args[@]}" >"$RAW/durable_cl.json" || true
stop "$SRV_PID"
NATS_PORT=$(free_port)
taskset -c $SERVER_CORE "$NATS" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/jetstream" \
  >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_port "$NATS_PORT"
log "durable, NATS JetStream (file storage, one replica)"
gen durable --protocol nats "${dur_args[@]}" --server "127.0.0.1:$NATS_PORT" --server-pid "$NATS_PID" --json \
  >"$RAW/durable_nats.json" || true
stop "$NATS_PID"

# --- 8. MLS: a commit adding one member to a 1,000-member group ------------------
# Client work, no server: the one case of cipherline-e2e's commit bench
# (X-Wing), on the generator's core; the build is not pinned.
log "MLS commit, add 1 to 1,000 members (cargo bench, release)"
CIPHERLINE_COMMIT_BENCH=add1000 taskset -c $GEN_CORE cargo bench --locked -q -p cipherline-e2e --bench commit \
  >"$RAW/mls_add1000.json" || true

# --- the table ------------------------------------------------------------------
python3 "$ROOT/bench/table.py" "$RAW" "$OUT" "$(date -u +%Y-%m-%dT%H:%MZ)" "$IDLE_BIG"
