"""`make demo`: the whole idea, for real, on loopback, with no keys.

A LiveKit server, Ollama with a small model, the local speech server and Prometheus; a real
Kubernetes control plane with the chart installed by helm and the operator running as the chart's
ServiceAccount; the real `agent-worker` process answering a scripted caller's spoken questions;
and the operator scaling the VoiceAgent on the active-rooms metric Prometheus scrapes from it.

    python -m demo            (make demo; needs `make testbed`)
"""
