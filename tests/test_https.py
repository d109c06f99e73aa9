"""HTTPS as it is deployed: the shipped nginx example parses and, run in front of the app, gives https with
HSTS and the client's address and scheme through the trusted proxy; the app's own TLS option (a self-signed
certificate) serves the PWA to Chromium, whose service worker registers and reloads the app offline."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import expect

from .conftest import CHROMIUM, require
from .servers import ROOT, ServerProcess, free_port

DEPLOY = ROOT / "deploy"


def self_signed(folder: Path) -> tuple[Path, Path, str]:
    """A certificate for 127.0.0.1 and localhost; returns (cert, key, base64 SHA-256 of its public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outage-desk test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def browser(tls):
    """This module's one browser: it trusts the test certificate by its key (as a device given the site's
    certificate would), so the page is a secure context with no certificate error."""
    require(Path(CHROMIUM).exists() or bool(shutil.which("chromium")), "Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--disable-component-update",
                "--no-first-run",
                f"--ignore-certificate-errors-spki-list={tls[2]}",
            ],
        )
        yield browser
        browser.close()


def test_deploy_examples_name_what_exists():
    nginx = (DEPLOY / "nginx.conf").read_text()
    caddy = (DEPLOY / "Caddyfile").read_text()
    for text in (nginx, caddy):
        assert "127.0.0.1:8000" in text and "OUTAGE_TRUSTED_PROXIES=127.0.0.1" in text
    assert "X-Forwarded-Proto $scheme" in nginx and "X-Forwarded-For $proxy_add_x_forwarded_for" in nginx
    readme = (ROOT / "README.md").read_text()
    assert "## Running in production" in readme
    for path in re.findall(r"`(deploy/[\w.]+)`", readme):
        assert (ROOT / path).is_file(), path
    assert re.search(r'"--port", type=int, default=8000', (ROOT / "backend" / "cli.py").read_text())


def test_nginx_example_parses_and_proxies_with_hsts(tls, tmp_path):
    require(bool(shutil.which("nginx")), "nginx (apt-get install nginx)")
    cert, key, _ = tls
    server = ServerProcess(
        tmp_path / "app", OUTAGE_TRUSTED_PROXIES="127.0.0.1", OUTAGE_BACKUP_EVERY_HOURS="0"
    )
    https_port, http_port = free_port(), free_port()
    site = (DEPLOY / "nginx.conf").read_text()
    site = site.replace("/etc/ssl/outage-desk/fullchain.pem", str(cert))
    site = site.replace("/etc/ssl/outage-desk/privkey.pem", str(key))
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    site = site.replace("listen 443", f"listen 127.0.0.1:{https_port}").replace(
        "listen 80", f"listen 127.0.0.1:{http_port}"
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n proxy_temp_path {tmp_path}/proxy;\n"
        f" include {tmp_path}/site.conf;\n}}\n"
    )
    command = ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    server.start()
    proxy = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        base = f"https://127.0.0.1:{https_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(
                    f"{base}/api/health", verify=ssl.create_default_context(cafile=str(cert)), timeout=5
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proxy.poll() is None, "nginx did not start"
                time.sleep(0.1)
        assert answer.status_code == 200
        assert answer.headers["strict-transport-security"] == "max-age=31536000"
        assert answer.headers["content-security-policy"].count("default-src") == 1  # not added twice
        plain = httpx.get(f"http://127.0.0.1:{http_port}/api/health", follow_redirects=False, timeout=5)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        direct = httpx.get(f"{server.base}/api/health", timeout=5)  # plain http to the app itself: no HSTS
        assert "strict-transport-security" not in direct.headers
        # The app believes the proxy's X-Forwarded-For, not one a client makes up in front of it.
        spoofed = httpx.get(
            f"{server.base}/api/health", headers={"X-Forwarded-Proto": "https"}, timeout=5
        )  # from 127.0.0.1, a trusted proxy: believed
        assert spoofed.headers.get("strict-transport-security")
    finally:
        proxy.terminate()
        proxy.wait(10)
        server.stop()


def test_direct_tls_serves_the_pwa_offline(tls, tmp_path, new_context, artifacts):
    cert, key, _ = tls
    server = ServerProcess(
        tmp_path / "tls", OUTAGE_TLS_CERT=str(cert), OUTAGE_TLS_KEY=str(key), OUTAGE_BACKUP_EVERY_HOURS="0"
    )
    users = server.add_users("tls", ("agent",))
    server.start()
    try:
        assert server.base.startswith("https://")
        answer = httpx.get(
            f"{server.base}/api/health", verify=ssl.create_default_context(cafile=str(cert)), timeout=10
        )
        assert answer.headers["strict-transport-security"] == "max-age=31536000"
        context = new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(server.base + "/#/login")
        assert page.evaluate("window.isSecureContext") is True
        page.fill("input[name=username]", users["agent"])
        page.fill("input[name=password]", server.PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/#/")
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
        scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
        assert scope == server.base + "/"
        context.set_offline(True)
        page.reload()
        expect(page.locator("#net")).to_have_text("离线")
        expect(page.locator("h1")).to_contain_text("agent tls")
        page.screenshot(path=artifacts / "https-offline.png")
    finally:
        server.stop()
