"""The test bed runs where every address is loopback, so no test can reach beyond 127.0.0.0/8."""

from __future__ import annotations

import socket

import pytest

from .harness.network import WEBRTC_CLIENT_ADDRESS, addresses, only_loopback_addresses

pytestmark = pytest.mark.testbed


def test_every_network_address_is_loopback():
    assert only_loopback_addresses(), addresses()
    assert WEBRTC_CLIENT_ADDRESS in [a for found in addresses().values() for a in found]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError):  # no route to anything outside 127.0.0.0/8
            sock.connect(("192.0.2.1", 9))
