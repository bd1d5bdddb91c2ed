"""The fraud reference system's own logic."""
