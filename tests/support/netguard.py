"""A network guard: any connection or name lookup beyond loopback is recorded and refused before it leaves.

Installed for every test by tests/conftest.py, and in child processes through tests/support/site/sitecustomize.py
(PYTHONPATH) with TWINCHAT_NETGUARD_LOG naming the file that collects what was refused.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
attempts: list[str] = []
_installed = False


def is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    attempts.append(what)
    path = os.environ.get("TWINCHAT_NETGUARD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(what + "\n")


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _allowed(sock: socket.socket, address: object) -> bool:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return True
        return isinstance(address, tuple) and is_loopback(address[0])

    def connect(self: socket.socket, address: object) -> None:
        if not _allowed(self, address):
            _record(f"connect {address!r}")
            raise ConnectionRefusedError(
                f"network guard: connection to {address!r} refused (tests stay offline)"
            )
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        if not _allowed(self, address):
            _record(f"connect_ex {address!r}")
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if host is not None and not is_loopback(host):
            _record(f"getaddrinfo {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
