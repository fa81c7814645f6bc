#!/usr/bin/env python3
"""A minimal TaskGrid protocol v1 client in Python, written from docs/PROTOCOL.md alone.

Standard library only. It finds the dispatcher through the nameservice, submits tasks, takes
their results from the dispatcher's `done` pushes and by polling, sends and receives messages
in fragments, and signs its datagrams when TASKGRID_SECRET is set. It retransmits with a plain
doubling timeout and re-sends every fragment; see docs/PROTOCOL.md for what a full client adds.

  TASKGRID_NAMESERVICE=127.0.0.1:5001 [TASKGRID_SECRET=...] python3 examples/python/taskgrid_client.py

test/e2e/python-client.test.ts runs it against a real grid.
"""
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import sys
import time

MAGIC = b"TG"
VERSION = 1
MSG, FRAG, FRAG_ACK, PROBE = 1, 2, 3, 4
FLAG_SIGNED = 1
BUDGET = 1200  # bytes per datagram we send (the doc's non-loopback default)


class TaskGridError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class Client:
    def __init__(self, secret=None, budget=BUDGET):
        # Bound to loopback: this example talks to a local grid (bind 0.0.0.0 to reach others).
        self.secret = secret.encode() if secret else None
        self.budget = budget
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.next_id = random.randrange(0, 2**32)
        self.pushed = []  # views from `done` pushes
        self.partial = {}  # (addr, msg id) -> {count, total, frags}
        self.seen = set()

    # ---- frames -------------------------------------------------------------------------
    def _new_id(self):
        i = self.next_id
        self.next_id = (self.next_id + 1) % 2**32
        return i

    def _sign(self, datagram):
        if not self.secret:
            return datagram
        # flag bit 0 must be set in the signed header
        datagram = datagram[:4] + bytes([datagram[4] | FLAG_SIGNED]) + datagram[5:]
        ts = struct.pack(">Q", int(time.time() * 1000))
        mac = hmac.new(self.secret, datagram + ts, hashlib.sha256).digest()
        return datagram + ts + mac

    def _verify(self, datagram):
        if not self.secret:
            if datagram[4] & FLAG_SIGNED:
                raise ValueError("signed datagram but no secret")
            return datagram
        if not datagram[4] & FLAG_SIGNED or len(datagram) < 45:
            raise ValueError("unsigned datagram")
        body, mac = datagram[:-32], datagram[-32:]
        if not hmac.compare_digest(hmac.new(self.secret, body, hashlib.sha256).digest(), mac):
            raise ValueError("bad signature")
        return body[:-8]

    def _header(self, ftype):
        return MAGIC + bytes([VERSION, ftype, 0])

    def _send_envelope(self, addr, env, xmit):
        raw = json.dumps(env, separators=(",", ":")).encode()
        overhead = 5 + 4 + (40 if self.secret else 0)
        if len(raw) + overhead <= self.budget and len(raw) <= 65535:
            dg = self._header(MSG) + struct.pack(">HBB", len(raw), xmit, 0) + raw
            self.sock.sendto(self._sign(dg), addr)
            return
        # FRAG: fragments of the envelope's JSON bytes (guess: the envelope, not the MSG entry)
        per = self.budget - (5 + 16 + (40 if self.secret else 0))
        count = (len(raw) + per - 1) // per
        for i in range(count):
            chunk = raw[i * per:(i + 1) * per]
            dg = self._header(FRAG) + struct.pack(">IIII", env["id"], i, count, len(raw)) + chunk
            self.sock.sendto(self._sign(dg), addr)

    def _handle_datagram(self, data, addr):
        """Returns the (envelope, transmission number) pairs carried by the datagram."""
        if len(data) < 5 or data[:2] != MAGIC or data[2] != VERSION:
            return []
        try:
            data = self._verify(data)
        except ValueError:
            return []  # dropped unanswered, as the grid's components do
        ftype = data[3]
        out = []
        if ftype == MSG:
            off = 5
            while off < len(data):
                (n, xmit, _r) = struct.unpack_from(">HBB", data, off)
                off += 4
                out.append((json.loads(data[off:off + n]), xmit))
                off += n
        elif ftype == FRAG:
            mid, idx, count, total = struct.unpack_from(">IIII", data, 5)
            key = (addr, mid)
            st = self.partial.setdefault(key, {"count": count, "total": total, "frags": {}})
            st["frags"][idx] = data[21:]
            if len(st["frags"]) == count:
                raw = b"".join(st["frags"][i] for i in range(count))
                del self.partial[key]
                self._send_frag_ack(addr, mid, count, 1, count, 0)
                out.append((json.loads(raw), 0))
            elif len(st["frags"]) % 32 == 0 or idx == count - 1:
                below = 0
                while below in st["frags"]:
                    below += 1
                self._send_frag_ack(addr, mid, count, 0, below, 0)
        elif ftype == PROBE:
            mid, count, token = struct.unpack_from(">III", data, 5)
            st = self.partial.get((addr, mid))
            if st is None:
                self._send_frag_ack(addr, mid, count, 2, 0, token)
            else:
                below = 0
                while below in st["frags"]:
                    below += 1
                self._send_frag_ack(addr, mid, count, 0, below, token)
        # FRAG_ACK to our own fragments: ignored (we send every fragment each transmission)
        return out

    def _send_frag_ack(self, addr, mid, count, status, below, echo):
        dg = self._header(FRAG_ACK) + struct.pack(">IIBII", mid, count, status, below, echo)
        self.sock.sendto(self._sign(dg), addr)

    def _serve(self, env, xmit, addr):
        """Handle a request sent to us (the dispatcher's `done` push)."""
        if env["k"] == "done":
            if (addr, env["id"]) not in self.seen:
                self.seen.add((addr, env["id"]))
                self.pushed.extend(env["b"]["tasks"])
            reply = {"k": "ok", "id": self._new_id(), "re": env["id"], "b": {}}
        else:
            reply = {"k": "error", "id": self._new_id(), "re": env["id"],
                     "b": {"code": "TG_ERR_UNKNOWN_KIND", "message": env["k"]}}
        self._send_envelope(addr, reply, xmit)

    # ---- requests -----------------------------------------------------------------------
    def request(self, addr, kind, body, deadline_s=10.0):
        env = {"k": kind, "id": self._new_id(), "b": body}
        end = time.monotonic() + deadline_s
        rto, xmit = 0.2, 1
        self._send_envelope(addr, env, xmit)
        next_send = time.monotonic() + rto
        while True:
            now = time.monotonic()
            if now >= end:
                raise TaskGridError("TG_ERR_TIMEOUT", f"{kind} to {addr}: no reply")
            self.sock.settimeout(max(0.001, min(next_send, end) - now))
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                if time.monotonic() >= next_send:
                    xmit = min(xmit + 1, 255)
                    rto = min(rto * 2, 2.0)
                    self._send_envelope(addr, env, xmit)
                    next_send = time.monotonic() + rto
                continue
            for msg, mx in self._handle_datagram(data, src):
                if msg.get("re") == env["id"]:
                    if msg["k"] == "ok":
                        return msg["b"]
                    if msg["k"] == "busy":
                        raise TaskGridError("TG_ERR_BUSY", msg["b"]["message"])
                    raise TaskGridError(msg["b"]["code"], msg["b"]["message"])
                if "re" not in msg:
                    self._serve(msg, mx, src)

    def wait_pushes(self, ids, timeout_s):
        end = time.monotonic() + timeout_s
        want = set(ids)
        while not want <= {t["id"] for t in self.pushed} and time.monotonic() < end:
            self.sock.settimeout(max(0.001, end - time.monotonic()))
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            for msg, mx in self._handle_datagram(data, src):
                if "re" not in msg:
                    self._serve(msg, mx, src)
        return [t for t in self.pushed if t["id"] in want]


def main():
    host, port = os.environ.get("TASKGRID_NAMESERVICE", "127.0.0.1:5001").rsplit(":", 1)
    c = Client(os.environ.get("TASKGRID_SECRET"))
    found = c.request((host, int(port)), "lookup", {"role": "dispatcher"})["instances"]
    if not found:
        print("no dispatcher registered", file=sys.stderr)
        return 1
    d = found[0]["address"]
    dispatcher = (d["host"], d["port"])
    print(f"dispatcher {d['host']}:{d['port']}")

    # Submitted with notify: the result comes with the dispatcher's `done` push.
    r = c.request(dispatcher, "submit", {"tasks": [{"type": "reverse", "payload": "Hello"}], "notify": True})
    tid = r["results"][0]["id"]
    for t in c.wait_pushes([tid], 10):
        print("pushed", t["id"], t["status"], t.get("result"))

    # Polled: get-result holds its answer until the task ends (or waitMs passes).
    r = c.request(dispatcher, "submit", {"tasks": [{"type": "reverse", "payload": "abc"}]})
    tid = r["results"][0]["id"]
    res = c.request(dispatcher, "get-result", {"ids": [tid], "waitMs": 10000}, deadline_s=15)
    for t in res["tasks"]:
        print("polled", t["id"], t["status"], t.get("result"))

    # A message larger than one datagram travels in fragments, both ways.
    big = "x" * 200_000 + "y"
    r = c.request(dispatcher, "submit", {"tasks": [{"type": "reverse", "payload": big}]}, deadline_s=15)
    tid = r["results"][0]["id"]
    res = c.request(dispatcher, "get-result", {"ids": [tid], "waitMs": 10000}, deadline_s=20)
    t = res["tasks"][0]
    print("large", t["id"], t["status"], len(t.get("result") or ""),
          "correct" if t.get("result") == big[::-1] else "wrong")

    # A refused task is an error in its own place of the submit reply.
    r = c.request(dispatcher, "submit", {"tasks": [{"type": "no-such-type", "payload": "x"}]})
    print("refused", r["results"][0]["error"]["code"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
