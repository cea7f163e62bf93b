"""Starts the test bed's real programs (built by `make testbed` into .testbed/) on loopback."""
