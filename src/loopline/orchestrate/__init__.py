"""Closing the loop: alert rules and their actions, automatic rollback, and ``loopline watch``."""
