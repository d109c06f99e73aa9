# Outage Desk: everyday commands. `just --list` shows them.
set dotenv-load := false

venv := ".venv"
py := venv / "bin/python"

# Show the recipes
default:
    @just --list

# Create .venv if missing and install the app with its test tools
install:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install --quiet --upgrade pip
    {{py}} -m pip install --quiet -e '.[test]'

# Install, migrate, load the default playbooks/forms and serve on http://127.0.0.1:8000 (SQLite under var/)
run *args: install
    {{py}} -m backend serve {{args}}

# Run the whole test suite (PostgreSQL tests need TEST_POSTGRES_URL; browser tests need /usr/bin/chromium)
test *args: install
    {{py}} -m pytest {{args}}

# Create a demo site with one user per role and print their credentials
demo *args: install
    {{py}} -m backend demo {{args}}

# Upgrade the database (DATABASE_URL, default var/outage_desk.db) to the newest schema
migrate: install
    {{py}} -m backend migrate

# Write a new Alembic migration from the models: just migration "add callbacks"
migration NAME: install
    {{py}} -m alembic revision --autogenerate -m "{{NAME}}" --rev-id "$(date +%Y%m%d)_$(date +%H%M%S)"

# Lint the Python code
lint: install
    {{py}} -m ruff check backend tests bench migrations

# Run the benchmarks and print their table
bench *args: install
    {{py}} -m bench {{args}}

# Write the OpenAPI document to openapi.json
openapi: install
    {{py}} -c "import json; from backend.app import create_app; print(json.dumps(create_app(run_workers=False).openapi_schema.to_schema(), ensure_ascii=False, indent=1))" > openapi.json
    @echo "wrote openapi.json"
