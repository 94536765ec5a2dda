"""A stand-in for a recursive DNS server (what /etc/resolv.conf's
`nameserver` points at), for tests only: it knows a fixed table of names
and answers A and AAAA questions about them from it.

The wire format is RFC 1035 section 4 (https://www.rfc-editor.org/rfc/rfc1035#section-4):
a 12-byte header, one question, resource records; over UDP one message per
datagram (section 4.2.1), over TCP each message after a two-byte length
(section 4.2.2). AAAA records are RFC 3596 section 2. Names not in the table
get NXDOMAIN (RCODE 3); a known name without records of the asked type gets
an empty NOERROR answer. Every question is recorded as (name, type).

It binds 127.0.0.1 only, on port 53 when asked (a resolv.conf nameserver
has no port): that needs root and, in a test, a network namespace of the
test's own (`unshare --net`).
"""

import ipaddress
import socket
import struct
import threading

A = 1
CNAME = 5
AAAA = 28
IN = 1


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_question(msg):
    """(id, flags, name, qtype, end of question) of a query."""
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if qd != 1:
        raise ValueError("not one question")
    pos, labels = 12, []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", msg[pos + 1 : pos + 5])
    return qid, flags, ".".join(labels), qtype, pos + 5


class DnsStandin:
    """`records`: {name: [ip, ...] or "cname:target"}. Serves UDP and TCP on
    127.0.0.1:`port` (0: a free one) in background threads."""

    def __init__(self, records, port=0):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.queries = []
        self.lock = threading.Lock()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", port))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        threading.Thread(target=self._serve_udp, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    def answer(self, query):
        qid, flags, name, qtype, end = read_question(query)
        with self.lock:
            self.queries.append((name.lower(), qtype))
        key = name.lower().rstrip(".")
        rrs = []
        rcode = 0
        entry = self.records.get(key)
        if entry is None:
            rcode = 3
        elif isinstance(entry, str) and entry.startswith("cname:"):
            target = entry[len("cname:") :]
            rdata = encode_name(target)
            rrs.append(b"\xc0\x0c" + struct.pack("!HHIH", CNAME, IN, 60, len(rdata)) + rdata)
            for ip in self.records.get(target.lower(), []):
                rrs += self._address(encode_name(target), ip, qtype)
        else:
            for ip in entry:
                rrs += self._address(b"\xc0\x0c", ip, qtype)
        # QR, opcode copied, AA, RD copied, RA; the question echoed.
        out_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, out_flags, 1, len(rrs), 0, 0)
        return header + query[12:end] + b"".join(rrs)

    @staticmethod
    def _address(owner, ip, qtype):
        addr = ipaddress.ip_address(ip)
        if (qtype, addr.version) not in ((A, 4), (AAAA, 6)):
            return []
        return [owner + struct.pack("!HHIH", qtype, IN, 60, len(addr.packed)) + addr.packed]

    def asked(self, name):
        """The types asked for `name`."""
        with self.lock:
            return [t for n, t in self.queries if n == name.lower()]

    def _serve_udp(self):
        while True:
            try:
                msg, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            try:
                self.udp.sendto(self.answer(msg), peer)
            except (ValueError, IndexError, struct.error):
                pass

    def _serve_tcp(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    (n,) = struct.unpack("!H", conn.recv(2))
                    out = self.answer(conn.recv(n))
                    conn.sendall(struct.pack("!H", len(out)) + out)
                except (OSError, ValueError, IndexError, struct.error):
                    pass

    def close(self):
        self.udp.close()
        self.tcp.close()
