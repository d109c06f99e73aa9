# Outage Desk: everyday commands. `just --list` shows them.
set dotenv-load := false

venv := ".venv"
py := venv / "bin/python"
py_dirs := "backend tests bench migrations"

# Show the recipes
default:
    @just --list

lock_file := "requirements.lock"
stamp := venv / ".installed"
uv_version := "0.13.9"

# Create .venv if missing and install requirements.lock, then the app; a no-op if neither it nor pyproject.toml changed
install:
    #!/usr/bin/env bash
    set -euo pipefail
    want="$(sha256sum {{lock_file}} pyproject.toml)"
    if [ -x {{py}} ] && [ "$(cat {{stamp}} 2>/dev/null)" = "$want" ]; then exit 0; fi
    test -x {{py}} || python3 -m venv {{venv}}
    rm -f {{stamp}}
    {{py}} -m pip install --quiet --upgrade pip
    {{py}} -m pip install --quiet --require-hashes -r {{lock_file}}
    {{py}} -m pip install --quiet --no-deps --no-build-isolation -e .
    if ! broken="$({{py}} -m pip check)"; then printf '%s\nrequirements.lock does not satisfy pyproject.toml: run just lock\n' "$broken" >&2; exit 1; fi
    printf '%s\n' "$want" > {{stamp}}

# Re-pin every Python dependency (runtime, test extra, build backend) with hashes in requirements.lock: just lock [--upgrade]
lock *args:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install --quiet 'uv=={{uv_version}}'
    {{py}} -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
        | {{venv}}/bin/uv pip compile --quiet pyproject.toml - --extra test --universal --python-version 3.11 --generate-hashes --custom-compile-command 'just lock' -o {{lock_file}} {{args}}

# Install, migrate, load the default playbooks/forms and serve on http://127.0.0.1:8000 (SQLite under var/)
run *args: install
    {{py}} -m backend serve {{args}}

axe_version := "4.14.1"
axe_dir := "var/axe"

# Install axe-core from the npm registry into var/axe (the accessibility sweep's engine); a no-op once there
axe:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -f {{axe_dir}}/node_modules/axe-core/axe.min.js ] && grep -q '"version": "{{axe_version}}",' {{axe_dir}}/node_modules/axe-core/package.json; then exit 0; fi
    if ! command -v npm >/dev/null; then echo "npm is missing: the accessibility sweep will skip (fail under OUTAGE_TEST_REQUIRE_ALL=1)" >&2; exit 0; fi
    npm install --silent --no-audit --no-fund --no-save --prefix {{axe_dir}} axe-core@{{axe_version}}

# Run the whole test suite (PostgreSQL tests need TEST_POSTGRES_URL; browser tests need /usr/bin/chromium)
test *args: install axe
    {{py}} -m pytest {{args}}

# A demo site with one user per role; prints the logins and the address to open (keeps existing passwords; --reset-passwords)
demo *args: install
    {{py}} -m backend demo {{args}}

# Upgrade the database (DATABASE_URL, default var/outage_desk.db) to the newest schema
migrate: install
    {{py}} -m backend migrate

# Write a new Alembic migration from the models: just migration "add callbacks"
migration NAME: install
    {{py}} -m alembic revision --autogenerate -m "{{NAME}}" --rev-id "$(date +%Y%m%d)_$(date +%H%M%S)"

# Lint: ruff check, ruff format --check and mypy backend (runs all three, fails if any fails)
lint: install
    #!/usr/bin/env bash
    status=0
    {{py}} -m ruff check {{py_dirs}} || status=1
    {{py}} -m ruff format --check --output-format concise {{py_dirs}} || status=1
    {{py}} -m mypy backend || status=1
    exit $status

# Format the Python code: sort imports (ruff's I rules) and ruff format
fmt: install
    {{py}} -m ruff check --select I --fix {{py_dirs}}
    {{py}} -m ruff format {{py_dirs}}

# Run the benchmarks and print their table
bench *args: install
    {{py}} -m bench {{args}}

# Write the OpenAPI document to openapi.json
openapi: install
    {{py}} -c "import json; from backend.app import create_app; from backend.openapi import document; print(json.dumps(document(create_app(run_workers=False)), ensure_ascii=False, indent=1))" > openapi.json
    @echo "wrote openapi.json"
