"""Strategies: the public strategy API (:mod:`deskd.strategies.api`), deskd's own S1-S3 written
on it, and the shared incremental indicators they read."""
