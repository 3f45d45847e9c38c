"""The pure core: envelopes, job metadata, metric mapping and time parsing (no I/O, no boto3, no datadog)."""
