"""Exit codes shared by every subcommand.

0: everything done (every message forwarded or ignored and deleted, every check passed);
1: incomplete (some rejected, left for retry or refused deletion by SQS, a check failed, an outage);
2: a usage or configuration error (an access-denied answer from AWS included), printed as one line.
"""

from __future__ import annotations

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2
