#!/usr/bin/env python3
"""An example cipherline bot: answers messages through `cipherline daemon`.

Standard library only. Two ways to reach a daemon (docs/daemon.md):

    # start one: everything after `--` goes to `cipherline daemon --stdio`
    python3 examples/bot.py -- --server HOST:PORT --name echobot --room lobby

    # or connect to one already running with `--socket PATH`
    cipherline daemon --socket /run/user/1000/bot.sock --server HOST:PORT --name echobot &
    python3 examples/bot.py --socket /run/user/1000/bot.sock --join lobby

It answers every direct message, and every message in a room it is in:

    TEXT     ->  echo: TEXT
    !time    ->  bot: the time here (UTC)
    !help    ->  bot: what it understands

Loops: the bot never answers its own messages (a room message it sent
comes back to it), and never answers a message that starts like one of
its replies ("echo: " or "bot: "), so two bots of this kind talking to each
other answer once each and stop. It writes what it does to standard error,
with peer strings escaped (`ascii()`), never raw on the terminal.

It follows the connection notifications (reconnecting, connected again:
the daemon reconnects by itself; the bot only reports it) and exits
cleanly when the daemon's output ends or on SIGINT/SIGTERM.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

# The daemon never writes a line longer than this (a message is at most
# 16 KiB of text, escaped); a longer line means something is wrong.
MAX_LINE = 1 << 20
# Replies start with one of these; messages that do are never answered.
REPLY_PREFIXES = ("echo: ", "bot: ")
HELP = "bot: I echo what you write; !time tells the time, !help shows this"


def log(*parts):
    print("bot:", *parts, file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM: stop as on SIGINT."""


def on_term(_signum, _frame):
    raise Stop()


class Daemon:
    """A line connection to a daemon: a socket, or a child's pipes."""

    def __init__(self, args):
        self.child = None
        self.sock = None
        if args.socket:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(args.socket)
            self.reader = self.sock.makefile("rb")
        else:
            daemon_args = [a for a in args.daemon_args if a != "--"]
            command = [args.cipherline, "daemon", "--stdio", *daemon_args]
            # Standard error is the bot's: the daemon's diagnostics show.
            self.child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.reader = self.child.stdout
        self.next_id = 0

    def lines(self):
        """Each object the daemon writes, until its output ends."""
        while True:
            line = self.reader.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                raise RuntimeError("the daemon wrote a line over the bound")
            if line.strip():
                yield json.loads(line)

    def request(self, method, params):
        """Writes a request; its id (the response comes among the lines)."""
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        data = (line + "\n").encode()
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            self.child.stdin.write(data)
            self.child.stdin.flush()
        return self.next_id

    def close(self):
        """Ends the connection; a daemon we started stops when its input ends."""
        if self.sock is not None:
            self.sock.close()
            return
        try:
            self.child.stdin.close()
        except OSError:
            pass
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.child.terminate()
            self.child.wait(timeout=10)


def reply_to(text):
    """The reply to `text`, or None to stay quiet."""
    if text.startswith(REPLY_PREFIXES):
        return None
    command = text.strip()
    if command == "!help":
        return HELP
    if command == "!time":
        return "bot: it is " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return "echo: " + text


class Bot:
    def __init__(self, daemon):
        self.daemon = daemon
        self.name = None  # learned from the `connected` notification

    def handle(self, obj):
        method = obj.get("method")
        if method is None:
            # A response: only errors are worth a word.
            if "error" in obj:
                log("request", obj.get("id"), "failed:", ascii(obj["error"].get("message")))
            return
        params = obj.get("params", {})
        if method == "connection":
            self.connection(params)
        elif method == "message":
            self.message(params)

    def connection(self, params):
        state = params.get("state")
        if state == "connected":
            if self.name is None:
                log("connected as", ascii(params.get("name")))
            else:
                log("connected again")
            self.name = params.get("name")
        elif state == "reconnecting":
            log("connection lost (", ascii(params.get("reason")), "); the daemon reconnects in",
                params.get("retry_in"), "s")
        elif state == "stopped":
            log("the daemon stopped:", ascii(params.get("reason")))

    def message(self, params):
        sender, text = params.get("from"), params.get("text", "")
        if sender is None or sender == self.name:
            return  # our own (a room sends ours back): never answered
        reply = reply_to(text)
        if reply is None:
            return
        if "room" in params:
            log("answering", ascii(sender), "in", ascii(params["room"]))
            self.daemon.request("send", {"room": params["room"], "text": reply})
        else:
            log("answering", ascii(sender))
            self.daemon.request("send", {"to": sender, "text": reply})


def main():
    parser = argparse.ArgumentParser(description="An example cipherline bot (see the module's doc).")
    parser.add_argument("--socket", metavar="PATH", help="connect to `cipherline daemon --socket PATH`")
    parser.add_argument("--cipherline", default=os.environ.get("CIPHERLINE", "cipherline"),
                        help="the cipherline binary to start (default: cipherline on PATH)")
    parser.add_argument("--join", metavar="ROOM", action="append", default=[],
                        help="a room to join at start (may be repeated)")
    parser.add_argument("daemon_args", nargs=argparse.REMAINDER,
                        help="after --: arguments for `cipherline daemon --stdio`")
    args = parser.parse_args()
    if bool(args.socket) == bool([a for a in args.daemon_args if a != "--"]):
        parser.error("give either --socket PATH or, after --, the daemon's arguments")

    signal.signal(signal.SIGTERM, on_term)
    daemon = Daemon(args)
    bot = Bot(daemon)
    code = 0
    try:
        for room in args.join:
            daemon.request("join", {"room": room})
        for obj in daemon.lines():
            bot.handle(obj)
        log("the daemon's output ended")
    except (KeyboardInterrupt, Stop):
        log("stopping")
    except (OSError, ValueError, RuntimeError) as e:
        log("error:", ascii(str(e)))
        code = 1
    finally:
        daemon.close()
    if daemon.child is not None and daemon.child.returncode not in (0, None):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
