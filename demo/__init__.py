"""`make demo`: the whole idea, for real, on one machine, with no keys.

A LiveKit server, Ollama with a small model and the local speech server; a real Kubernetes control
plane with a real kubelet node; the chart installed by helm, its operator running as a pod from
the operator image; the local VoiceAgent's worker pods, from the worker image, answering a
scripted caller's spoken questions over WebRTC; Prometheus discovering and scraping those pods;
and the operator scaling the worker Deployment on the active rooms Prometheus sees.

    python -m demo            (make demo; needs `make testbed images`)
"""
