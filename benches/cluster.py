#!/usr/bin/env python3
"""Replicas on one PostgreSQL: probes per second and CPU per 1,000 probes per replica with 1, 2
and 3 replicas, escalation claims per second, and the load PostgreSQL carries for them.

    cargo build --release && python3 benches/cluster.py [--probes 3000] [--window 20]
        [--replicas 1,2,3] [--no-claims]

It starts a throw-away PostgreSQL (initdb in a temporary directory; as root the server runs as
the `postgres` user), a TCP sink every probe connects to, and real `slowburn run` processes,
each with `--replica rN` in one location. CPU is read from /proc (user + system ticks) over
the same window for every replica and for every PostgreSQL process. Probes per second are
the rows the replicas stored in `slowburn_results` during the window (one per probe run).
For claims, every probe fails and pages a 3-step policy through a local webhook sink.
"""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def postgres_cpu(data):
    """CPU seconds of this benchmark's server: the postmaster with its exited children
    (cutime, cstime) and its live backends and workers."""
    with open(os.path.join(data, "postmaster.pid")) as f:
        master = int(f.readline())
    fields = stat(master)
    total = sum(int(x) for x in fields[11:15]) / TICK
    for path in glob.glob("/proc/[0-9]*"):
        pid = int(path.split("/")[2])
        try:
            fields = stat(pid)
        except OSError:
            continue
        if int(fields[1]) == master:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


class Postgres:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="slowburn-bench-pg-")
        self.port = free_port()
        self.bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(self.base, "postgres", "postgres")
        data = os.path.join(self.base, "data")
        self.run("initdb", "-D", data, "-A", "trust", "-U", "postgres")
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.base}'\n")
        self.run("pg_ctl", "start", "-D", data, "-w", "-l", os.path.join(self.base, "log"))
        self.data = data
        self.psql("CREATE DATABASE bench")

    def run(self, tool, *args):
        subprocess.run(self.user + [os.path.join(self.bin, tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, sql, db="postgres"):
        out = subprocess.run(self.user + [os.path.join(self.bin, "psql"), "-h", "127.0.0.1",
                             "-p", str(self.port), "-U", "postgres", "-d", db, "-Atc", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def dsn(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=bench sslmode=disable"

    def stop(self):
        self.run("pg_ctl", "stop", "-D", self.data, "-m", "immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def tcp_sink():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)

    def serve():
        while True:
            conn, _ = listener.accept()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()


class Hook(BaseHTTPRequestHandler):
    received = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Hook.received += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def probe_file(dir, probes, interval, target, hook, failing):
    lines = ["storage: {postgres: {dsn: env:SLOWBURN_PG, membership_timeout: 5s}}",
             f"notifiers: [{{name: hook, webhook: {{url: \"http://{hook[0]}:{hook[1]}/hook\"}}}}]",
             "policies: [{name: p, repeat: 0, steps: [{notify: [hook]}, {after: 1s, notify: [hook]},"
             " {after: 2s, notify: [hook]}]}]",
             "probes:"]
    alert = ", alert: {after: 1, policy: p}" if failing else ""
    for i in range(probes):
        lines.append(f"  - {{name: b{i}, interval: {interval}, timeout: 800ms,"
                     f" tcp: {{address: \"{target[0]}:{target[1]}\"}}{alert}}}")
    path = os.path.join(dir, "probes.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start(binary, dir, file, n, dsn):
    procs = []
    for i in range(n):
        env = dict(os.environ, SLOWBURN_PG=dsn, RUST_LOG="error")
        procs.append(subprocess.Popen(
            [binary, "run", "-c", file, "--listen", f"127.0.0.1:{free_port()}",
             "--store", os.path.join(dir, f"r{i}.db"), "--replica", f"r{i}", "--location", "bench"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=3000)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--replicas", default="1,2,3", help="replica counts to measure, in turn")
    ap.add_argument("--no-claims", action="store_true", help="skip the escalation claims run")
    ap.add_argument("--binary", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "slowburn"))
    args = ap.parse_args()
    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {model}; {args.probes} probes every {args.interval}")
    pg = Postgres()
    target = tcp_sink()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = server.server_address
    dir = tempfile.mkdtemp(prefix="slowburn-bench-")
    try:
        print("replicas | probes/s | CPU s per 1k probes, each replica | PG CPU cores | PG s per 1k probes")
        for n in (int(x) for x in args.replicas.split(",")):
            pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", "bench")
            file = probe_file(dir, args.probes, args.interval, target, hook, failing=False)
            procs = start(args.binary, dir, file, n, pg.dsn())
            time.sleep(args.warmup)
            t0 = pg.psql("SELECT extract(epoch FROM now())", "bench")
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            pg0, w0 = postgres_cpu(pg.data), time.time()
            time.sleep(args.window)
            t1 = pg.psql("SELECT extract(epoch FROM now())", "bench")
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            pg1, w1 = postgres_cpu(pg.data), time.time()
            rows = int(pg.psql(f"SELECT count(*) FROM slowburn_results WHERE at BETWEEN to_timestamp({t0}) AND to_timestamp({t1})", "bench"))
            counts = pg.psql(
                "SELECT string_agg(replica || '=' || n, ',') FROM (SELECT replica, count(*) n"
                f" FROM slowburn_results WHERE at BETWEEN to_timestamp({t0}) AND to_timestamp({t1})"
                " GROUP BY replica) x", "bench")
            per = dict(kv.split("=") for kv in counts.split(",") if kv)
            window = w1 - w0
            cpu = []
            for i, p in enumerate(procs):
                runs = int(per.get(f"r{i}", 0))
                cpu.append(f"r{i} {1000 * (cpu1[i] - cpu0[i]) / max(runs, 1):.3f}")
            pg_cores = (pg1 - pg0) / window
            print(f"{n} | {rows / (float(t1) - float(t0)):.0f} | {', '.join(cpu)} | {pg_cores:.2f} | {1000 * (pg1 - pg0) / max(rows, 1):.3f}")
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
        if args.no_claims:
            return 0
        # Claims: every probe fails at once and pages three steps.
        pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", "bench")
        failing = 600
        file = probe_file(dir, failing, "1s", ("127.0.0.1", free_port()), hook, failing=True)
        Hook.received = 0
        procs = start(args.binary, dir, file, 3, pg.dsn())
        pg0, w0 = postgres_cpu(pg.data), time.time()
        while Hook.received < failing * 3 and time.time() - w0 < 60:
            time.sleep(0.05)
        first = time.time()
        steps = int(pg.psql("SELECT count(*) FROM slowburn_steps WHERE state = 'sent'", "bench"))
        span = float(pg.psql("SELECT extract(epoch FROM max(sent_at) - min(sent_at)) FROM slowburn_steps", "bench"))
        pg1 = postgres_cpu(pg.data)
        print(f"claims: 3 replicas sent {steps} steps of {failing} alerts ({Hook.received} received) "
              f"in {span:.1f}s of sending ({steps / max(span, 0.001):.0f} claims/s; due times spread them over 2s); "
              f"PG CPU {(pg1 - pg0) / (first - w0):.2f} cores while opening and escalating")
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    finally:
        pg.stop()
        shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
