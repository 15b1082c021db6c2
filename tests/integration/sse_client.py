"""A strict Server-Sent Events client over a raw socket, following the
WHATWG HTML "event stream" rules, for checking what moonwire puts on the
wire rather than what a forgiving library makes of it.

Parsing (SSEParser), as a browser's EventSource does:
  - the stream is UTF-8 (strictly: an invalid byte fails the test), one
    leading BOM is dropped;
  - lines end at CRLF, LF or CR, also when the CR and LF arrive in
    different reads;
  - a line starting with ':' is a comment (kept in `comments`);
  - `field:value`, with one optional space after the colon removed; a line
    with no colon is a field with an empty value;
  - data: appended to the data buffer with an LF; event: the type;
    id: the last event ID buffer, unless the value holds a NUL;
    retry: the reconnection time, when the value is ASCII digits only;
    other fields are ignored (and counted in `unknown_fields`, which the
    tests expect to stay empty: moonwire never sends one);
  - a blank line dispatches: lastEventId is set from the buffer even when
    nothing is dispatched; an empty data buffer dispatches nothing; one
    trailing LF is removed from the data; the type defaults to "message".

SSEClient opens GET requests on a socket, checks the response head (200,
`text/event-stream`, `Cache-Control: no-cache`, `X-Accel-Buffering: no`,
a close-delimited body) and reads events with bounded waits:

    c = SSEClient(srv, "/feed", last_event_id="3")
    ev = c.next_event()           # SSEEvent(type, data, last_event_id)
    c.wait_closed()               # the server ended the stream
"""
import codecs
import re
import socket
import time
from collections import deque
from dataclasses import dataclass

BOM = "\ufeff"
LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class SSEEvent:
    type: str
    data: str
    last_event_id: str


class SSEParser:
    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._started = False     # past the optional BOM
        self._after_cr = False    # the last line ended with a CR (an LF may follow)
        self._partial = ""        # the line being read
        self._data = []
        self._type = ""
        self._id_buf = ""
        self.last_event_id = ""   # the source's last event ID string
        self.retry = None         # reconnection time in ms, once set
        self.comments = []
        self.unknown_fields = []
        self.items = []           # ("event", SSEEvent) and ("comment", text), in order
        self._pending = deque()   # not yet handed out by next_item()

    # -------------------------------------------------------------- feeding
    def feed(self, data, final=False):
        """Feeds bytes; returns the events dispatched by them."""
        text = self._decoder.decode(data, final)
        if not text:
            return []
        if not self._started:
            if text.startswith(BOM):
                text = text[1:]
            self._started = True
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF that arrived in two reads
        self._after_cr = False
        before = len(self.items)
        buf = self._partial + text
        pos = 0
        for m in LINE_END.finditer(buf):
            self._line_done(buf[pos:m.start()])
            pos = m.end()
        self._partial = buf[pos:]
        # a CR at the very end ended its line; an LF next is part of it
        self._after_cr = buf.endswith("\r")
        new = self.items[before:]
        self._pending.extend(new)
        return [x for kind, x in new if kind == "event"]

    def _line_done(self, line):
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            text = line[1:]
            self.comments.append(text)
            self.items.append(("comment", text))
            return
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._data.append(value)
            self._data.append("\n")
        elif field == "id":
            if "\0" not in value:
                self._id_buf = value
        elif field == "retry":
            if value and all("0" <= c <= "9" for c in value):
                self.retry = int(value)
        else:
            self.unknown_fields.append(line)

    def _dispatch(self):
        self.last_event_id = self._id_buf
        data = "".join(self._data)
        self._data = []
        event_type = self._type
        self._type = ""
        if data == "":
            return
        if data.endswith("\n"):
            data = data[:-1]
        self.items.append(("event", SSEEvent(event_type or "message", data, self.last_event_id)))

    @property
    def events(self):
        return [x for kind, x in self.items if kind == "event"]

    def next_item(self):
        return self._pending.popleft() if self._pending else None


def parse(data, pieces=None):
    """Parses a whole stream (bytes), optionally fed in pieces of the given
    sizes; returns the parser."""
    p = SSEParser()
    if pieces:
        i = 0
        for n in pieces:
            p.feed(data[i:i + n])
            i += n
        p.feed(data[i:])
    else:
        p.feed(data)
    p.feed(b"", final=True)
    return p


# ------------------------------------------------------------------ client

class StreamClosed(EOFError):
    pass


class SSEClient:
    """One event stream over its own connection."""

    def __init__(self, srv, path, last_event_id=None, headers=(), timeout=10, rcvbuf=None,
                 check=True):
        self.sock = socket.socket(socket.AF_INET6 if ":" in srv.host else socket.AF_INET)
        if rcvbuf:
            # before connect, so the advertised window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((srv.host, srv.port))
        self.timeout = timeout
        self.parser = SSEParser()
        self.eof = False
        self._in_body = False      # past the response head: bytes go to the parser
        self.body = bytearray()    # every byte of the body so far, as sent
        lines = [f"GET {path} HTTP/1.1", "Host: test", "Accept: text/event-stream",
                 "Cache-Control: no-cache"]
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        lines += [f"{k}: {v}" for k, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._raw = b""
        self.status, self.headers = self._read_head()
        if check:
            self.check_head()

    # --------------------------------------------------------------- head
    def _read_head(self):
        deadline = time.time() + self.timeout
        while b"\r\n\r\n" not in self._raw:
            if not self._recv(deadline):
                raise StreamClosed(f"connection closed before the response head: {self._raw!r}")
        head, _, rest = self._raw.partition(b"\r\n\r\n")
        self._raw = b""
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"bad header line {line!r}"
            headers.setdefault(name.lower(), []).append(value.strip())
        self.head_raw = head
        self._in_body = True
        if rest:
            self.body += rest
            self.parser.feed(rest)
        if self.eof:
            self.parser.feed(b"", final=True)
        return status, headers

    def header(self, name):
        v = self.headers.get(name.lower())
        return ", ".join(v) if v else None

    def check_head(self):
        assert self.status == 200, f"status {self.status}: {self.head_raw!r}"
        ctype = self.header("content-type") or ""
        assert ctype.split(";")[0].strip().lower() == "text/event-stream", ctype
        assert self.header("cache-control") == "no-cache", self.header("cache-control")
        assert self.header("x-accel-buffering") == "no", self.header("x-accel-buffering")
        # the body ends with the connection: no length, no chunk framing
        assert self.header("content-length") is None, self.head_raw
        assert self.header("transfer-encoding") is None, self.head_raw
        for name, values in self.headers.items():
            assert len(values) == 1, f"{name} sent {len(values)} times"

    # ------------------------------------------------------------ reading
    def _recv(self, deadline):
        if self.eof:
            return False
        self.sock.settimeout(max(0.005, deadline - time.time()))
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            if self._in_body:
                self.parser.feed(b"", final=True)
            return False
        if self._in_body:
            self.body += data
            self.parser.feed(data)
        else:
            self._raw += data
        return True

    def next_item(self, timeout=None):
        """The next event or comment: ("event", SSEEvent) or ("comment", text)."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            item = self.parser.next_item()
            if item:
                return item
            if time.time() > deadline:
                raise TimeoutError("no event in time; so far: %r" % (self.parser.items[-5:],))
            try:
                if not self._recv(deadline):
                    raise StreamClosed("the stream ended; so far: %r" % (self.parser.items[-5:],))
            except socket.timeout:
                raise TimeoutError("no event in time; so far: %r" % (self.parser.items[-5:],))

    def next_event(self, timeout=None):
        """The next event, skipping comments."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            kind, x = self.next_item(max(0.0, deadline - time.time()))
            if kind == "event":
                return x

    def next_comment(self, timeout=None):
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while True:
            kind, x = self.next_item(max(0.0, deadline - time.time()))
            if kind == "comment":
                return x

    def events(self, n, timeout=None):
        """The next n events (comments skipped)."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        return [self.next_event(max(0.0, deadline - time.time())) for _ in range(n)]

    def wait_closed(self, timeout=None):
        """Reads until the server ends the stream; returns the events that
        came before the end, and closes the socket (a socket left open would
        keep the server lingering for our FIN). Raises TimeoutError if the
        stream stays open."""
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        out = []
        while True:
            try:
                kind, x = self.next_item(max(0.0, deadline - time.time()))
            except StreamClosed:
                self.close()
                return out
            if kind == "event":
                out.append(x)

    def quiet_for(self, seconds):
        """True when nothing (not even a comment) arrives for `seconds` and
        the stream stays open."""
        try:
            item = self.next_item(seconds)
        except TimeoutError:
            return not self.eof
        except StreamClosed:
            return False
        self.parser._pending.appendleft(item)
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
