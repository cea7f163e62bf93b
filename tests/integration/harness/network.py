"""Moves the test process into a network namespace of its own where every address is loopback.

Binding servers to 127.0.0.1 is not enough to keep a test bed on loopback: WebRTC clients
gather candidates on every interface, so a LiveKit client and server would otherwise pair on the
machine's own non-loopback address. In a fresh namespace the programs the tests start (they
inherit it) can reach 127.0.0.0/8 and nothing else.

libwebrtc ignores interfaces flagged as loopback, so `lo` alone would leave a LiveKit client with
no candidate at all. The namespace therefore also has a veth pair whose one address is
127.0.0.2/32 (WEBRTC_CLIENT_ADDRESS): clients gather it, and every packet stays in 127.0.0.0/8.
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


def addresses() -> dict[str, list[str]]:
    """Every interface's IPv4/IPv6 addresses, by interface name."""
    listing = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    return {link["ifname"]: [a["local"] for a in link.get("addr_info", [])] for link in listing}


def only_loopback_addresses() -> bool:
    return all(ipaddress.ip_address(address) in LOOPBACK_NET or address == "::1"
               for found in addresses().values() for address in found)


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
    ):
        subprocess.run(command, check=True, capture_output=True, text=True)
    if not only_loopback_addresses():
        raise RuntimeError(f"expected only loopback addresses after unshare, found {addresses()}")
