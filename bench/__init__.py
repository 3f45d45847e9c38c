"""Throughput benchmark for the forwarder: ``python -m bench`` (see bench/README.md)."""
