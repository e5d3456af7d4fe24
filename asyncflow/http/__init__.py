"""The HTTP side of the server: health, metrics, the original's /v1 routes, the dashboard."""
