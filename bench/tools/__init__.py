"""One-off maintenance tools (record migrations); not part of any run."""
