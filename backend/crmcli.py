"""`python -m backend crm …`: set up a site's CRM connector and push its records.

    crm set --site SITE --url URL [--header "NAME: VALUE" | --bearer TOKEN | --hmac-key KEY]
            [--mapping FILE.json] [--ref-path JSONPATH] [--off]
    crm show --site SITE
    crm push --site SITE [--incident ID] [--dry-run]

`set` keeps what it is not told (an existing mapping stays unless --mapping is given), switches the connector
on unless --off, and prints the exact request for a sample record. `push` queues every record pending
re-entry (of the incident) and sends them at once from this process (what the server's worker would do);
retries that are not due yet are left to the server. A dry run prints what would be sent and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from . import clock, crm, crmapi, crmpush, outbound
from .auth import Site
from .config import load_settings
from .db import make_engine, sessionmaker
from .errors import Problem


async def _run(fn: Callable[[Any, Any], Awaitable[Any]]) -> Any:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    client = outbound.Client(settings.outbound_allow, crmpush.TIMEOUT)
    state = SimpleNamespace(settings=settings, sessionmaker=sessionmaker(engine), outbound=client)
    try:
        return await fn(state, settings)
    finally:
        await client.close()
        await engine.dispose()


async def _site(session: Any, slug: str) -> Site:
    site = (await session.execute(select(Site).where(Site.slug == slug))).scalar_one_or_none()
    if site is None:
        raise Problem(404, f"no site {slug!r}")
    return site


def _fail(problem: Problem) -> int:
    print(problem.detail, file=sys.stderr)
    extra = problem.extra if isinstance(problem.extra, dict) else {}
    for key, value in extra.get("errors", {}).items():
        print(f"  {key}: {value}", file=sys.stderr)
    return 2


def _connector_in(args: argparse.Namespace, stored: crm.CrmConnector | None) -> crm.ConnectorIn:
    auth = stored.auth if stored else "none"
    header_name = stored.header_name if stored else None
    secret = None
    if args.header:
        name, sep, value = args.header.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise Problem(422, 'The header must be "NAME: VALUE".', errors={"header": "not NAME: VALUE"})
        auth, header_name, secret = "header", name.strip(), value.strip()
    elif args.bearer:
        auth, header_name, secret = "bearer", None, args.bearer
    elif args.hmac_key:
        auth, header_name, secret = "hmac", args.signature_header, args.hmac_key
    mapping = stored.mapping if stored else {}
    if args.mapping:
        try:
            mapping = json.loads(Path(args.mapping).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise Problem(
                422, f"Cannot read the mapping file: {exc}", errors={"mapping": "unreadable"}
            ) from exc
    try:
        return crm.ConnectorIn(
            url=args.url,
            auth=auth,  # type: ignore[arg-type]
            header_name=header_name,
            secret=secret,
            mapping=mapping,
            ref_path=args.ref_path or (stored.ref_path if stored else "$.id"),
            enabled=not args.off,
        )
    except (TypeError, ValueError) as exc:
        raise Problem(422, f"Not a usable set-up: {exc}") from exc


def cmd_set(args: argparse.Namespace) -> int:
    async def run(state: Any, settings: Any) -> dict[str, Any]:
        async with state.sessionmaker() as session:
            site = await _site(session, args.site)
            at = await clock.now(state, session)
            data = _connector_in(args, await crm.get_connector(session, site.id))
            rules = state.outbound.rules
            saved = await crm.save_connector(
                session, site.id, data, secret_key=settings.secret_key, rules=rules, actor="cli", at=at
            )
            preview = await crmapi.preview_request(
                session,
                site.id,
                crmapi.PreviewIn(form=args.form),
                secret_key=settings.secret_key,
                rules=rules,
                at=at,
            )
            await session.commit()
            return {"connector": crm.describe(saved), "preview": preview}

    try:
        result = asyncio.run(_run(run))
    except Problem as problem:
        return _fail(problem)
    connector = result["connector"]
    print(
        f"CRM connector of {args.site}: {connector['url']} ({connector['auth']}), "
        f"{'on' if connector['enabled'] else 'off'}; reference at {connector['ref_path']}"
    )
    print("The request for a sample record:")
    print(json.dumps(result["preview"], ensure_ascii=False, indent=1, default=str))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    async def run(state: Any, settings: Any) -> dict[str, Any]:
        async with state.sessionmaker() as session:
            return crm.describe(await crm.get_connector(session, (await _site(session, args.site)).id))

    try:
        print(json.dumps(asyncio.run(_run(run)), ensure_ascii=False, indent=1, default=str))
    except Problem as problem:
        return _fail(problem)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    async def run(state: Any, settings: Any) -> dict[str, Any]:
        async with state.sessionmaker() as session:
            site = await _site(session, args.site)
            result = await crmapi.push_records(
                session,
                site.id,
                user_id=None,
                record_ids=None,
                incident_id=args.incident,
                dry_run=args.dry_run,
                secret_key=settings.secret_key,
                at=await clock.now(state, session),
            )
            await session.commit()
        if args.dry_run:
            return result
        await crmpush.drain(state)
        async with state.sessionmaker() as session:
            where = [crmpush.CrmDelivery.site_id == site.id]
            if args.incident is not None:
                where.append(crmpush.CrmDelivery.incident_id == args.incident)
            result["deliveries"] = {
                state_: n
                for state_, n in (
                    await session.execute(
                        select(crmpush.CrmDelivery.state, func.count())
                        .where(*where)
                        .group_by(crmpush.CrmDelivery.state)
                    )
                ).all()
            }
            result["failed"] = [
                {"record_id": str(d.record_id), "error": d.last_error, "retry_at": d.next_attempt_at}
                for d in (
                    await session.execute(
                        select(crmpush.CrmDelivery).where(*where, crmpush.CrmDelivery.state == "failed")
                    )
                ).scalars()
            ]
        return result

    try:
        result = asyncio.run(_run(run))
    except Problem as problem:
        return _fail(problem)
    if args.dry_run:
        print(json.dumps(result, ensure_ascii=False, indent=1, default=str))
        return 0
    counts = result["deliveries"]
    print(
        f"queued {len(result['queued'])}, skipped {len(result['skipped'])}; deliveries: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    for failure in result["failed"]:
        when = f"retry at {failure['retry_at'].isoformat()}" if failure["retry_at"] else "given up"
        print(f"  {failure['record_id']}: {failure['error']} ({when})")
    if result["changed"]:
        print(
            f"{len(result['changed'])} record(s) changed after the CRM got them: push them again by id "
            "in the app (they are never re-sent by themselves)"
        )
    return 0


def add_parsers(sub: Any, prepare: Callable[[], None]) -> None:
    """The `crm` command and its subcommands, on the main parser's subparsers; `prepare` migrates first."""

    def prepared(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            prepare()
            return fn(args)

        return run

    commands = sub.add_parser("crm", help="the CRM connector").add_subparsers(
        dest="crm_command", required=True
    )
    setup = commands.add_parser("set", help="set up the site's CRM connector (and show a sample request)")
    setup.add_argument("--site", required=True)
    setup.add_argument("--url", required=True)
    auth = setup.add_mutually_exclusive_group()
    auth.add_argument("--header", help='authenticate with one header: "NAME: VALUE"')
    auth.add_argument("--bearer", help="authenticate with a bearer token")
    auth.add_argument("--hmac-key", help="sign each request with HMAC-SHA256 and this key")
    setup.add_argument("--signature-header", help="the header for the HMAC signature (X-OD-Signature)")
    setup.add_argument("--mapping", help="JSON file: {form: {body: template, time_zone?}}")
    setup.add_argument("--ref-path", help="where the CRM's answer holds its reference ($.id)")
    setup.add_argument("--form", default="call-record", help="the form of the sample request")
    setup.add_argument("--off", action="store_true", help="save it switched off")
    setup.set_defaults(fn=prepared(cmd_set))
    show = commands.add_parser("show", help="the site's CRM connector (without its secret)")
    show.add_argument("--site", required=True)
    show.set_defaults(fn=prepared(cmd_show))
    push = commands.add_parser("push", help="send the records pending re-entry to the CRM")
    push.add_argument("--site", required=True)
    push.add_argument("--incident", type=int, help="only this incident's records")
    push.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    push.set_defaults(fn=prepared(cmd_push))
