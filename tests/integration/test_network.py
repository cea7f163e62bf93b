"""The test bed runs where every address is loopback or its own pod network, so no test can reach
anything outside the namespace."""

from __future__ import annotations

import socket

import pytest

from .harness.network import NODE_IP, WEBRTC_CLIENT_ADDRESS, addresses, node_network_ready, in_closed_network

pytestmark = pytest.mark.testbed


def test_every_network_address_is_loopback_or_the_pod_network():
    assert in_closed_network(), addresses()
    assert WEBRTC_CLIENT_ADDRESS in [a for found in addresses().values() for a in found]
    assert node_network_ready(), f"the pod bridge with {NODE_IP} is missing: {addresses()}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError):  # no route to anything outside 127.0.0.0/8
            sock.connect(("192.0.2.1", 9))
