"""A tiny SMTP server for the peer tests: ``python -m tests.smtp_responder PORT LOG``.

It listens on 127.0.0.1:PORT in its own process (so that SIGSTOP stops it for
real), answers the greeting, EHLO/HELO, NOOP, RSET and QUIT, refuses
everything else with 502, and appends every command it receives to LOG, one
line each, so a test can see that a health check sent no MAIL, RCPT or DATA.
Python's ``smtpd`` is gone since 3.12; this needs nothing outside the
standard library.
"""

from __future__ import annotations

import socketserver
import sys
import threading

_lock = threading.Lock()


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self) -> None:
        self.wfile.write(b"220 127.0.0.1 test responder ESMTP\r\n")
        for raw in self.rfile:
            line = raw.rstrip(b"\r\n")
            with _lock, open(self.server.log_path, "ab") as log:  # type: ignore[attr-defined]
                log.write(line + b"\n")
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-127.0.0.1\r\n250 8BITMIME\r\n")
            elif verb in {b"HELO", b"NOOP", b"RSET"}:
                self.wfile.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 not implemented\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(port: int, log_path: str) -> None:
    with _Server(("127.0.0.1", port), _Handler) as server:
        server.log_path = log_path  # type: ignore[attr-defined]
        server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
