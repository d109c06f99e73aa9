"""What a playbook or a form may say: the schemas an admin's (or a shipped file's) definition must fit, and
the rules msgspec cannot express (unique names, consistent references, increasing ladders, patterns RE2 can
run). backend.documents stores them; backend.forms validates records against them."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec
import re2

from .db import has_nul
from .errors import Problem

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]


class LangText(msgspec.Struct, forbid_unknown_fields=True):
    zh_CN: NonEmpty = msgspec.field(name="zh-CN")
    en: NonEmpty


class Choice(msgspec.Struct, forbid_unknown_fields=True):
    value: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    label: LangText


FieldType = Literal["text", "textarea", "tel", "integer", "datetime", "choice", "boolean"]


class FormField(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    type: FieldType
    label: LangText
    help: LangText | None = None
    required: bool = False
    required_if: dict[str, Any] | None = None
    max_length: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None
    pattern: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    min: int | None = None
    max: int | None = None
    choices: list[Choice] | None = None
    default: Any = None
    print_width: Annotated[int, msgspec.Meta(ge=1, le=4)] | None = None


class FormDefinition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    slug: Slug
    title: LangText
    fields: Annotated[list[FormField], msgspec.Meta(min_length=1, max_length=60)]
    description: LangText | None = None


Who = Literal["agent", "lead", "manager", "ops"]
Notify = Literal["agent", "lead", "manager", "admin"]


class Step(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: Slug
    who: Who
    text: LangText
    within_minutes: Annotated[int, msgspec.Meta(ge=0, le=100000)] | None = None


class Rung(msgspec.Struct, forbid_unknown_fields=True):
    after_minutes: Annotated[int, msgspec.Meta(ge=0, le=100000)]
    notify: Annotated[list[Notify], msgspec.Meta(min_length=1)]
    message: LangText


class Contact(msgspec.Struct, forbid_unknown_fields=True):
    role: Name
    label: LangText
    phone: Annotated[str, msgspec.Meta(pattern=r"^[0-9+()\- ]{3,30}$")]


class Script(msgspec.Struct, forbid_unknown_fields=True):
    zh_CN: list[NonEmpty] = msgspec.field(name="zh-CN")
    en: list[NonEmpty]


class PlaybookDefinition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    slug: Slug
    category: Literal["technical", "facility", "safety", "demand", "public"]
    title: LangText
    summary: LangText
    steps: Annotated[list[Step], msgspec.Meta(min_length=1, max_length=60)]
    escalation: list[Rung] = []
    script: Script | None = None
    forms: list[Slug] = []
    contacts: list[Contact] = []


class DirectoryDefinition(msgspec.Struct, forbid_unknown_fields=True):
    """A site's contact directory: the numbers its playbooks' tel: links and escalation ladders use. An entry
    replaces the number of every playbook contact with the same role; entries named after a role the ladder
    notifies (lead, manager, admin) are shown on those rungs."""

    slug: Literal["contacts"] = "contacts"
    entries: Annotated[list[Contact], msgspec.Meta(max_length=100)] = []


DEFINITIONS: dict[str, type[FormDefinition] | type[PlaybookDefinition] | type[DirectoryDefinition]] = {
    "form": FormDefinition,
    "playbook": PlaybookDefinition,
    "directory": DirectoryDefinition,
}
CONTENT_KINDS = (
    "form",
    "playbook",
)  # what devices keep for offline (the directory reaches them inside playbooks)


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re2._Regexp:
    """An admin's field pattern, compiled by RE2: matching takes time linear in the input, so no pattern
    (such as ^(a+)+$) can make one record block the server. Raises re2.error for what RE2 cannot run
    (backreferences, lookaround): such a pattern is refused when the form is saved."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def check_definition(kind: str, definition: msgspec.Struct) -> dict[str, str]:
    """Rules msgspec cannot express: unique names, consistent references, increasing ladders."""
    errors: dict[str, str] = {}
    if isinstance(definition, FormDefinition):
        names = [f.name for f in definition.fields]
        if len(names) != len(set(names)):
            errors["fields"] = "field names must be unique"
        for f in definition.fields:
            if f.type == "choice" and not f.choices:
                errors[f"fields.{f.name}"] = "a choice field needs choices"
            if f.choices and len({c.value for c in f.choices}) != len(f.choices):
                errors[f"fields.{f.name}"] = "choice values must be unique"
            for other in f.required_if or {}:
                if other not in names:
                    errors[f"fields.{f.name}"] = f"required_if names an unknown field {other!r}"
            if f.pattern:
                try:
                    compile_pattern(f.pattern)
                except re2.error as exc:
                    errors[f"fields.{f.name}"] = (
                        f"pattern is not a regular expression this server runs (no "
                        f"backreferences or lookaround): {exc}"
                    )
    elif isinstance(definition, DirectoryDefinition):
        roles = [e.role for e in definition.entries]
        if len(roles) != len(set(roles)):
            errors["entries"] = "each role may be listed once"
    else:
        assert isinstance(definition, PlaybookDefinition)
        ids = [s.id for s in definition.steps]
        if len(ids) != len(set(ids)):
            errors["steps"] = "step ids must be unique"
        minutes = [r.after_minutes for r in definition.escalation]
        if minutes != sorted(set(minutes)):
            errors["escalation"] = "after_minutes must strictly increase"
    return errors


SERVER_KEYS = ("version", "lang", "updated_at")  # what GET adds; a GET body can be edited and PUT back


def parse_definition(
    kind: str, raw: dict[str, Any]
) -> FormDefinition | PlaybookDefinition | DirectoryDefinition:
    raw = {k: v for k, v in raw.items() if k not in SERVER_KEYS}
    if has_nul(raw):
        raise Problem(
            422,
            f"This {kind} definition holds a NUL character, which cannot be stored.",
            code="validation.nul",
        )
    if kind == "playbook" and isinstance(raw.get("escalation"), list):
        # GET adds the site directory's numbers to each rung (documents.with_directory): not part of it.
        raw["escalation"] = [
            {k: v for k, v in r.items() if k != "contacts"} if isinstance(r, dict) else r
            for r in raw["escalation"]
        ]
    try:
        definition: FormDefinition | PlaybookDefinition | DirectoryDefinition = msgspec.convert(
            raw, DEFINITIONS[kind]
        )
    except msgspec.ValidationError as exc:
        raise Problem(422, f"This {kind} definition is not valid: {exc}", code="document.invalid") from exc
    if errors := check_definition(kind, definition):
        raise Problem(422, f"This {kind} definition is not valid.", errors=errors, code="document.invalid")
    return definition


def as_stored(definition: msgspec.Struct) -> dict[str, Any]:
    return msgspec.to_builtins(definition)
