"""Outage Desk backend: a thin Litestar API in front of SQLite or PostgreSQL."""
