"""The VoiceAgent operator: runs, monitors and autoscales agent-worker fleets on Kubernetes."""
