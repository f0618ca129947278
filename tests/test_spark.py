"""The Spark session recdistill opens: a local driver reachable from this machine only."""

from __future__ import annotations

import psutil

from tests.network import LOOPBACK, listening_addresses


def test_a_local_driver_listens_on_loopback_only(spark):
    """Finding 6: without the loopback binding the driver's RPC and block manager took the external address."""
    jvm = [p.pid for p in psutil.Process().children(recursive=True) if p.name() == "java"]
    addresses = listening_addresses(jvm)
    assert jvm and addresses and addresses <= LOOPBACK, addresses
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
