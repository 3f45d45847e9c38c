"""The record handler and the drain loop: verdicts, acknowledgement, heartbeat."""
