"""Names shared by the worker (which exports them) and the operator (which reads them)."""

# Gauge: LiveKit sessions (rooms) this worker pod is serving right now, summed over its job processes.
ACTIVE_SESSIONS = "agent_worker_active_sessions"
