"""Exit codes shared by every subcommand.

0: everything done (every message forwarded or ignored, every check passed); 1: incomplete (some
rejected or left for retry, a check failed, an outage); 2: a usage or configuration error, printed
as one line.
"""

from __future__ import annotations

EXIT_OK, EXIT_INCOMPLETE, EXIT_CONFIG = 0, 1, 2
