"""Moves the test process into a network namespace of its own, closed to the outside world.

Binding servers to 127.0.0.1 is not enough to keep a test bed on loopback: WebRTC clients
gather candidates on every interface, so a LiveKit client and server would otherwise pair on the
machine's own non-loopback address. In a fresh namespace the programs the tests start (they
inherit it) can reach 127.0.0.0/8 and nothing else.

libwebrtc ignores interfaces flagged as loopback, so `lo` alone would leave a LiveKit client with
no candidate at all. The namespace therefore also has a veth pair whose one address is
127.0.0.2/32 (WEBRTC_CLIENT_ADDRESS): clients gather it, and every packet stays in 127.0.0.0/8.

The test bed's real node (harness/node.py) needs one more network: its pods live in POD_SUBNET
(10.88.0.0/24) behind the bridge `cni0`, whose address NODE_IP (10.88.0.1) is also the node's
address, where pods reach the apiserver, livekit-server and the model and speech servers. That
network exists only inside this namespace, and the namespace has no route out: every address
here is loopback or in POD_SUBNET, and there is no default route.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import subprocess

CLONE_NEWNET = 0x40000000
WEBRTC_INTERFACE, WEBRTC_PEER = "webrtc0", "webrtc1"
WEBRTC_CLIENT_ADDRESS = "127.0.0.2"
LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")
NODE_BRIDGE = "cni0"
POD_SUBNET = ipaddress.ip_network("10.88.0.0/24")
NODE_IP = "10.88.0.1"
NODE_BRIDGE_MAC = "02:0a:58:00:00:01"


def addresses() -> dict[str, list[str]]:
    """Every interface's IPv4/IPv6 addresses, by interface name."""
    listing = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", [])] for link in listing}


def in_closed_network() -> bool:
    """True where every address is loopback, or in the test bed's own pod network, and no route
    leads anywhere else: the namespace `isolate_to_loopback` makes."""
    def closed(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return ip in LOOPBACK_NET or ip in POD_SUBNET or address == "::1"

    return all(closed(address) for found in addresses().values() for address in found) and not default_route()


def default_route() -> bool:
    routes = json.loads(subprocess.run(["ip", "-j", "route"], capture_output=True, text=True, check=True).stdout)
    return any(route.get("dst") == "default" for route in routes)


def node_network_ready() -> bool:
    """The pod network's bridge (see the module docstring) is up in this namespace."""
    return NODE_IP in addresses().get(NODE_BRIDGE, [])


def isolate_to_loopback() -> None:
    """unshare(CLONE_NEWNET) for this process (needs root or CAP_SYS_ADMIN), then sets up `lo`
    and the WebRTC veth pair. Must run before the process starts threads."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWNET) failed: {os.strerror(error)}; the test bed needs "
                             "root (or CAP_SYS_ADMIN) to run in a loopback-only network namespace "
                             "(or set TESTBED_HOST_NETWORK=1 to run without it)")
    # No IPv6 link-local addresses on the veth pair: only 127.0.0.2 should be gathered there.
    with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as setting:
        setting.write("1")
    for command in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", WEBRTC_INTERFACE, "type", "veth", "peer", "name", WEBRTC_PEER],
        ["ip", "addr", "add", f"{WEBRTC_CLIENT_ADDRESS}/32", "dev", WEBRTC_INTERFACE],
        ["ip", "link", "set", WEBRTC_INTERFACE, "up"],
        ["ip", "link", "set", WEBRTC_PEER, "up"],
        # The real node's pod network; the CNI bridge plugin attaches each pod's veth to it.
        # A bridge without an address of its own takes the lowest of its ports' and changes it as
        # pods come and go, leaving the pods' ARP entries for the node pointing at a MAC that is
        # gone until they expire: a fixed, locally administered one.
        ["ip", "link", "add", NODE_BRIDGE, "address", NODE_BRIDGE_MAC, "type", "bridge"],
        ["ip", "addr", "add", f"{NODE_IP}/{POD_SUBNET.prefixlen}", "dev", NODE_BRIDGE],
        ["ip", "link", "set", NODE_BRIDGE, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True, text=True)
    if not in_closed_network():
        raise RuntimeError(f"expected only loopback addresses after unshare, found {addresses()}")
