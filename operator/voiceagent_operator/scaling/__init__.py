"""Autoscaling on active rooms: observe the pods, decide with a pure policy, prefer idle pods for removal."""
