"""What the gateway did: metrics, request logs, traces, callbacks and the dashboard."""
