"""Which addresses a process tree listens on: how the tests check that services bind loopback only."""

from __future__ import annotations

import psutil

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening_addresses(pids: list[int]) -> set[str]:
    """Addresses the processes `pids` and all their descendants accept connections on."""
    processes = [psutil.Process(pid) for pid in pids]
    processes += [child for process in list(processes) for child in process.children(recursive=True)]
    addresses = set()
    for process in processes:
        try:
            connections = process.net_connections("inet")
        except psutil.NoSuchProcess:  # a short-lived child that ended after the listing
            continue
        addresses |= {conn.laddr.ip for conn in connections if conn.status == psutil.CONN_LISTEN}
    return addresses
