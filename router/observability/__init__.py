"""Logs (structlog, JSON or console) and Prometheus metrics."""
