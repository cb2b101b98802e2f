"""Ports for the servers the tests start.

A port that the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the machine's ephemeral range,
the same range every outgoing connection takes its local port from. In a parallel run (a Ray head's
dozens of connections, MLflow clients, the browser's) such a port was taken again between the test
choosing it and its server binding it: ``serve`` then said "port … is in use" (four tests in one run).
:func:`free_port` picks a port below that range instead, which no connection takes by itself, and
checks that nothing holds it now.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000
"""Above the ports a Ray node keeps for its workers (10002-19999 by default), which a Ray head refuses to
give to another of its parts (``tests/cluster``)."""


def ephemeral_start() -> int:
    """The first port of this machine's ephemeral range (Linux's default: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing holds now, below the ephemeral range where it can be."""
    top = ephemeral_start()
    if top - LOWEST >= 1000:
        for _ in range(100):
            port = random.randrange(LOWEST, top)
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:  # (a machine whose ephemeral range starts low)
        sock.bind((host, 0))
        return sock.getsockname()[1]
