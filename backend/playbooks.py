"""Emergency playbooks: ordered steps, the escalation ladder, the call script, the forms they use."""

from __future__ import annotations

from .documents import make_router

router = make_router("playbook", "/api/playbooks", "playbooks")
