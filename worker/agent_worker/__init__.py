"""agent-worker: a LiveKit voice agent with a fast pre-response and per-turn cost metrics."""
