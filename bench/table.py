"""Turns bench/compare.sh's raw results into the table of ratios and JSON.

usage: table.py RAW_DIR OUT_JSON DATE IDLE_BIG
"""

import json
import os
import platform
import subprocess
import sys

raw_dir, out_path, date, idle_big = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def load(name):
    try:
        with open(os.path.join(raw_dir, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return {}


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def machine():
    model, mem = None, None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "kernel": platform.release(),
        "rustc": version(["rustc", "--version"]),
        "openssl": version(["openssl", "version"]),
        "ngircd": version(["ngircd", "--version"]) or version(["/usr/sbin/ngircd", "--version"]),
        "iperf3": version(["iperf3", "--version"]),
    }


raw = {name[:-5]: load(name[:-5]) for name in sorted(os.listdir(raw_dir)) if name.endswith(".json")}
speed = raw.get("openssl_speed", {})
tls = raw.get("tls13", {})
iperf = raw.get("iperf3", {})


def get(name, field):
    return raw.get(name, {}).get(field)


def ratio(a, b):
    return round(a / b, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


rows = []


def row(measure, ours, anchor, anchor_name, target, met, note=""):
    rows.append({
        "measure": measure,
        "cipherline": ours,
        "anchor": anchor,
        "anchor_name": anchor_name,
        "ratio": ratio(ours, anchor),
        "target": target,
        "met": met,
        "note": note,
    })


def at_least(x, bound):
    return None if x is None else x >= bound


def below(x, bound):
    return None if x is None else x < bound


def at_most(x, bound):
    return None if x is None else x <= bound


# The targets are issue 19's: each a ratio to an anchor measured in the
# same run (or an absolute bound where the issue gives one).
rsa_sign = speed.get("sign_per_sec")
awslc_rsa = get("privop_rsa2048", "ops_per_cpu_sec")
row("RSA-2048 private ops/s per core, aws-lc OAEP decrypt (the server's)", awslc_rsa, rsa_sign,
    "openssl speed rsa2048 sign/s", "(anchor)", None)
for suite, label, targeted in [("0x0121", "RSA-2048 + X25519MLKEM768 (default)", True),
                               ("0x0111", "RSA-2048 + X25519", False)]:
    name = "hs_rsa2048_" + suite
    per_core = get(name, "handshakes_per_server_cpu_sec")
    wall = get(name, "handshakes_per_sec")
    row(f"handshakes/s per server core, {label} [{suite}]", per_core, rsa_sign, "openssl speed rsa2048 sign/s",
        ">= 0.8x" if targeted else "(none)", at_least(ratio(per_core, rsa_sign), 0.8) if targeted else None,
        f"wall {wall}/s; {ratio(per_core, awslc_rsa)}x aws-lc's private-op rate")
    tls_core = tls.get("handshakes_per_server_cpu_sec")
    row("  same, against TLS 1.3 s_server (RSA-2048) per core", per_core, tls_core,
        "openssl s_server TLS 1.3", ">= 2x" if targeted else "(none)",
        at_least(ratio(per_core, tls_core), 2.0) if targeted else None,
        f"s_server wall {tls.get('handshakes_per_sec')}/s")
x_core = get("hs_x25519_0x0221", "handshakes_per_server_cpu_sec")
x_speed = get("openssl_x25519", "ops_per_sec")
row("handshakes/s per server core, X25519 key + X25519MLKEM768 [0x0221]", x_core, x_speed,
    "openssl speed ecdhx25519 op/s", ">= 0.25x", at_least(ratio(x_core, x_speed), 0.25),
    f"wall {get('hs_x25519_0x0221', 'handshakes_per_sec')}/s")

cl_rate = get("fan_cl_flood", "deliveries_per_sec")
row("fan-out flood: deliveries/s", cl_rate, get("fan_ircs_flood", "deliveries_per_sec"), "ngircd TLS",
    ">= 1.5x", at_least(ratio(cl_rate, get("fan_ircs_flood", "deliveries_per_sec")), 1.5),
    f"ngircd plaintext {get('fan_irc_flood', 'deliveries_per_sec')}/s")
cl_cpu = get("fan_cl_flood", "server_cpu_us_per_delivery")
row("fan-out flood: server CPU per delivery (us)", cl_cpu, get("fan_irc_flood", "server_cpu_us_per_delivery"),
    "ngircd plaintext", "<= 0.8x",
    at_most(ratio(cl_cpu, get("fan_irc_flood", "server_cpu_us_per_delivery")), 0.8),
    f"ngircd TLS {get('fan_ircs_flood', 'server_cpu_us_per_delivery')} us")
row("fan-out flood: p99 latency (ms)", get("fan_cl_flood", "p99_ms"), get("fan_irc_flood", "p99_ms"),
    "ngircd plaintext", "(none)", None, f"ngircd TLS {get('fan_ircs_flood', 'p99_ms')} ms")
paced = get("fan_cl_paced", "p99_ms")
row("fan-out paced 20 msg/s/client: p99 latency (ms)", paced, get("fan_irc_paced", "p99_ms"), "ngircd plaintext",
    "< 2 ms", below(paced, 2.0), f"ngircd TLS {get('fan_ircs_paced', 'p99_ms')} ms")

e2e_cpu = get("fan_e2e_flood", "server_cpu_us_per_delivery")
row("end-to-end room fan-out: server CPU per delivery (us) / open room", e2e_cpu, cl_cpu,
    "open room, same flood", "<= 1.1x", at_most(ratio(e2e_cpu, cl_cpu), 1.1),
    f"{get('fan_e2e_flood', 'deliveries_per_sec')} deliveries/s, p99 {get('fan_e2e_flood', 'p99_ms')} ms, "
    f"{get('fan_e2e_flood', 'payload_bytes')}-byte opaque payloads (an MLS message of the same text)")
mls = get("mls_add1000", "add_cpu_ms")
row("MLS: commit adding one member to a 1,000-member group, client CPU (ms)", mls, None, "", "< 50 ms",
    below(mls, 50.0),
    f"X-Wing; wall {get('mls_add1000', 'add_ms')} ms, commit {get('mls_add1000', 'commit_bytes')} B, "
    f"Welcome {get('mls_add1000', 'welcome_bytes')} B")

bulk = get("bulk_cl", "mb_per_sec")
row("bulk relay MB/s", bulk, iperf.get("mb_per_sec"), "iperf3 single stream", ">= 0.5x",
    at_least(ratio(bulk, iperf.get("mb_per_sec")), 0.5))

for n in (1000, idle_big):
    per = get(f"idle_{n}", "server_rss_per_conn_bytes")
    target = "<= 3072" if n == idle_big else "(none)"
    row(f"server RSS per idle connection at {n} (bytes)", per, None, "", target,
        at_most(per, 3072) if n == idle_big else None,
        f"RSS {get(f'idle_{n}', 'server_rss_kib')} KiB with {get(f'idle_{n}', 'established')} held; "
        "ngircd plaintext: 2.65 kB (issue 19)")

durable = get("durable_cl", "acked_per_sec")
jetstream = get("durable_nats", "acked_per_sec")
row("acknowledged durable messages/s, SQLite store (fsync, group commit)", durable, jetstream,
    "NATS JetStream, file storage, 1 replica", ">= 1.0x", at_least(ratio(durable, jetstream), 1.0),
    f"server CPU {get('durable_cl', 'server_cpu_us_per_message')} us/message, "
    f"nats-server {get('durable_nats', 'server_cpu_us_per_message')} us/publish")

suites = []
for name, r in raw.items():
    if name.startswith("hs_"):
        suites.append({"key": name.split("_")[1], "suite": r.get("suite_code"), "name": r.get("suite"),
                       "handshakes_per_sec": r.get("handshakes_per_sec"),
                       "handshakes_per_server_cpu_sec": r.get("handshakes_per_server_cpu_sec"),
                       "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"), "errors": r.get("errors")})

result = {"date": date, "machine": dict(machine(), busy_pct_before=get("machine_busy", "busy_pct_before")), "table": rows, "handshakes": suites, "raw": raw}
with open(out_path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")


def fmt(x):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:,.2f}" if abs(x) < 100 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


print(f"\ncipherline comparison, {date}, {result['machine']['cpu']}, {result['machine']['cores']} cores, "
      f"{result['machine']['busy_pct_before']}% busy before the run")
print(f"{'measure':<66} {'cipherline':>12} {'anchor':>12} {'ratio':>7} {'target':>22} {'met':>4}  anchor / note")
for r in rows:
    print(f"{r['measure']:<66} {fmt(r['cipherline']):>12} {fmt(r['anchor']):>12} {fmt(r['ratio']):>7} "
          f"{r['target']:>22} {fmt(r['met']):>4}  {r['anchor_name']}; {r['note']}")
print(f"\n{'key':<8} {'suite':<7} {'handshakes/s':>13} {'per server core':>16} {'p50 ms':>8} {'p99 ms':>8}  errors")
for s in suites:
    print(f"{s['key']:<8} {s['suite'] or '-':<7} {fmt(s['handshakes_per_sec']):>13} "
          f"{fmt(s['handshakes_per_server_cpu_sec']):>16} {fmt(s['p50_ms']):>8} {fmt(s['p99_ms']):>8}  {s['errors']}")
print(f"\nwritten: {out_path}")
