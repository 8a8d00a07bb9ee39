"""SSRF-safe egress (`bastion.transport.http.egress`): the payload table of SPEC-SSRF-01..04
and 08, then real fetches against loopback servers: redirects are handed back unfollowed, the
resolved address is pinned while Host and TLS SNI keep the name, a rebinding resolver fails
closed, and bodies and waits are capped.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.transport.http.egress import (
    EgressClient,
    EgressFailed,
    EgressPolicy,
    EgressRefused,
    check_browser_url,
    networks,
)

pytestmark = pytest.mark.timeout(20)

STRICT = EgressPolicy()
DEV = EgressPolicy(allow_insecure_loopback=True)

# SPEC-SSRF-02's payloads, and the other ranges it names: refused with or without the opt-in.
PRIVATE_PAYLOADS = [
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:127.0.0.1]/",
    "http://2852039166/",
    "https://2852039166/",
    "https://0xA9FEA9FE/",
    "https://0251.0376.0251.0376/",
    "http://127.1/",
    "https://127.1/",
    "http://localhost.:6379/",
    "https://localhost./",
    "https://admin.localhost/",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://172.31.255.255/",
    "https://192.168.1.1/",
    "https://0.0.0.0/",
    "https://0.1.2.3/",
    "https://100.64.0.1/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://[fc00::1]/",
    "https://[fd12:3456::1]/",
    "https://[fe80::1]/",
    "https://[ff02::1]/",
    "https://[::]/",
    "https://[2002:a9fe:a9fe::1]/",  # 6to4 around 169.254.169.254
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
]


@pytest.mark.parametrize("url", PRIVATE_PAYLOADS)
@pytest.mark.parametrize("policy", [STRICT, DEV], ids=["strict", "loopback-opt-in"])
def test_SPEC_SSRF_02_private_and_ambiguous_hosts_refused(policy: EgressPolicy, url: str) -> None:
    with pytest.raises(EgressRefused):
        policy.check_url(url)


@pytest.mark.parametrize("url", [
    "http://evil.example/.well-known/oauth-authorization-server",
    "ftp://as.example/x", "javascript:alert(1)", "file:///etc/passwd", "data:text/plain,x",
    "https://user:pass@as.example/", "https://as.example:0/", "//as.example/x", "https://",
    "https://as.example/a b", "https://as.example/\r\nX-Injected: 1", "", "h" * 5000,
])
def test_SPEC_SSRF_01_only_https_urls(url: str) -> None:
    with pytest.raises(EgressRefused):
        DEV.check_url(url)


def test_SPEC_SSRF_01_loopback_http_needs_the_opt_in() -> None:
    for url in ("http://127.0.0.1:8080/x", "http://localhost:9/x", "http://[::1]:9/x"):
        with pytest.raises(EgressRefused, match="plain http"):
            STRICT.check_url(url)
        assert DEV.check_url(url).hostname in ("127.0.0.1", "localhost", "::1")
    with pytest.raises(EgressRefused, match="loopback"):
        STRICT.check_url("https://127.0.0.1/")
    assert STRICT.check_url("https://as.example.com/.well-known/x").hostname == "as.example.com"
    assert STRICT.check_url("https://8.8.8.8/").hostname == "8.8.8.8"


def test_SPEC_SSRF_02_allowed_networks_open_only_themselves() -> None:
    policy = EgressPolicy(allowed_networks=networks(["10.1.2.0/24"]))
    assert policy.check_url("https://10.1.2.3/token")
    with pytest.raises(EgressRefused):
        policy.check_url("https://10.1.3.3/token")
    with pytest.raises(EgressRefused, match="plain http"):
        policy.check_url("http://10.1.2.3/token")
    with pytest.raises(ValueError):
        networks(["10.1.2.3/24"])  # host bits set: a typo, not a range
    with pytest.raises(EgressRefused):
        STRICT.check_url(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,<script>x</script>",
    "file:///etc/passwd", "vbscript:msgbox(1)", 'https://x"; calc; "', "https://x/ y",
    "https://trusted.example@evil.example/", "https://as.example/\x00", "", "about:blank",
])
def test_SPEC_SSRF_08_urls_for_people_are_plain_http(url: str) -> None:
    with pytest.raises(EgressRefused):
        check_browser_url(url)


def test_SPEC_SSRF_08_shows_the_host() -> None:
    assert check_browser_url("https://Auth.Example.com/authorize?client_id=a&state=b") == \
        "auth.example.com"


# -- fetching --------------------------------------------------------------------------------


def resolver_from(answers: list[list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return resolve, calls


async def test_SPEC_SSRF_02_every_resolved_address_is_checked() -> None:
    resolve, calls = resolver_from([["93.184.216.34", "127.0.0.1"]])
    egress = EgressClient(STRICT, resolver=resolve)
    try:
        with pytest.raises(EgressRefused, match="refused address"):
            await egress.fetch("GET", "https://as.example.com/.well-known/x")
        assert calls == ["as.example.com"]
    finally:
        await egress.aclose()

    async def broken(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    egress = EgressClient(STRICT, resolver=broken)
    try:
        with pytest.raises(EgressFailed, match="cannot resolve"):
            await egress.fetch("GET", "https://nowhere.example/")
    finally:
        await egress.aclose()


def probe_app(hits: list[str], port_of: list[int]) -> Starlette:
    async def echo(request: Request) -> Response:
        hits.append(request.url.path)
        return JSONResponse({"host": request.headers.get("host")},
                            headers={"Connection": "close"})

    async def redirect(request: Request) -> Response:
        hits.append(request.url.path)
        return RedirectResponse(f"http://127.0.0.1:{port_of[0]}/admin", 302)

    async def big(request: Request) -> Response:
        return Response(b"x" * (1024 * 1024), media_type="application/octet-stream")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(3)
        return JSONResponse({})

    return Starlette(routes=[Route("/echo", echo), Route("/admin", echo),
                             Route("/redirect", redirect), Route("/big", big),
                             Route("/slow", slow)])


async def test_SPEC_SSRF_03_redirects_are_returned_not_followed(rig) -> None:
    hits: list[str] = []
    port_of: list[int] = []
    app = probe_app(hits, port_of)
    base = await rig.serve(app)
    port_of.append(int(base.rsplit(":", 1)[1]))
    egress = rig.egress()
    response = await egress.fetch("GET", f"{base}/redirect")
    assert response.status == 302
    assert response.location == f"http://127.0.0.1:{port_of[0]}/admin"
    assert hits == ["/redirect"]  # /admin never reached
    with pytest.raises(EgressFailed, match="limit"):
        await egress.fetch("GET", f"{base}/big", max_size=1000)
    with pytest.raises(EgressFailed, match="within"):
        await egress.fetch("GET", f"{base}/slow", timeout=0.3)
    with pytest.raises(EgressFailed, match="not a JSON object"):
        (await egress.fetch("GET", f"{base}/big", max_size=2 * 1024 * 1024)).json()


def self_signed(tmp_path, name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_SPEC_SSRF_04_pinned_address_keeps_host_and_sni(rig, tmp_path) -> None:
    """The name resolves (once per connection) to the checked address; TLS verifies the
    certificate for the name, and Host carries the name. A resolver that rebinds the name
    to cloud metadata for the next connection is refused before connecting."""
    cert, key = self_signed(tmp_path, "pinned.test")
    hits: list[str] = []
    base = await rig.serve(probe_app(hits, []), ssl_certfile=cert, ssl_keyfile=key)
    port = int(base.rsplit(":", 1)[1])
    resolve, calls = resolver_from([["127.0.0.1"], ["169.254.169.254"]])
    policy = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    egress = EgressClient(policy, resolver=resolve, ssl=ssl.create_default_context(cafile=cert))
    try:
        response = await egress.fetch("GET", f"https://pinned.test:{port}/echo")
        assert response.status == 200
        assert response.json() == {"host": f"pinned.test:{port}"}
        with pytest.raises(EgressRefused, match=r"169\.254\.169\.254"):
            await egress.fetch("GET", f"https://pinned.test:{port}/echo")
        assert calls == ["pinned.test", "pinned.test"]
        assert hits == ["/echo"]
    finally:
        await egress.aclose()
    # The same server under another name fails TLS verification: SNI is the URL's name.
    other = EgressClient(policy, resolver=resolver_from([["127.0.0.1"]])[0],
                         ssl=ssl.create_default_context(cafile=cert))
    try:
        with pytest.raises(EgressFailed):
            await other.fetch("GET", f"https://other.test:{port}/echo")
    finally:
        await other.aclose()
