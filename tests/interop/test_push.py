"""push_wake through FCM (docs/protocol.md §9, docs/operations.md § Push), end to end.

The relay talks HTTPS to two local fakes (pushlib.py) — an OAuth2 token endpoint (the key's
`token_uri`) and FCM (`PYRYCODE_RELAY_FCM_BASE_URL`) — whose certificates come from a test CA
the relay trusts through SSL_CERT_FILE. The fakes record every request, so the tests check the
JWT's signature with the key's public half, the exact bodies and headers, token caching, the
admission limits, every outcome and the faults (endpoint down, slow, 500, garbage, hanging,
untrusted certificate, oversized answer, a burst of 1,000). All traffic stays on 127.0.0.1.
"""

import asyncio
import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from conftest import free_port
from pushlib import Google, b64url, key_json, make_account_key, make_pki
from relaylib import open_binary, open_phone, phone_conn_id, recv_json, scrape, start, wait_until

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
SEND_PATH = "/v1/projects/pyrycode-mobile/messages:send"
GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"


@pytest.fixture(scope="module")
def pki():
    return make_pki()


@pytest.fixture(scope="module")
def account_key():
    return make_account_key()


@pytest.fixture
def google(pki):
    g = Google(pki)
    yield g
    g.close()


def push_relay(start_relay, relay_bin, pki, key, token_uri, fcm_url):
    return start(start_relay, relay_bin, env={
        "PYRYCODE_RELAY_FCM_CREDENTIALS": key_json(key, token_uri),
        "PYRYCODE_RELAY_FCM_BASE_URL": fcm_url,
        "SSL_CERT_FILE": pki["ca"]})


def wake(token, platform="fcm"):
    return json.dumps({"push_wake": {"platform": platform, "token": token}})


def fp(token):
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def outcomes(r):
    m = scrape(r)
    return {o: m.get(("pyrycode_relay_push_wakes_total", (("outcome", o),)))
            for o in ["sent", "unregistered", "send_failed", "token_fetch_failed", "dropped"]}


def events(r, msg, at_least=1):
    """The relay's log events named `msg`, once at least `at_least` have been read: a counter on
    /metrics moves before the reader thread has the log line that goes with it."""
    return wait_until(lambda: (lambda found: found if len(found) >= at_least else None)(
        [e for e in r.log_events() if e.get("msg") == msg]), timeout=5, what=f"log event {msg}")


def wait_outcomes(r, total, timeout=15):
    return wait_until(lambda: (lambda o: o if sum(v for k, v in o.items() if k != "dropped") >= total else None)(outcomes(r)),
                      timeout=timeout, what=f"{total} wake outcomes")


# ---------------------------------------------------------------------------------------------
# The exchange, exactly
# ---------------------------------------------------------------------------------------------

def test_wake_signs_a_jwt_and_sends_the_exact_fcm_request(relay_bin, start_relay, pki, account_key, google):
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)
    r.proc.wait_for_log(lambda l: "msg=relay_started" in l and "push=fcm" in l)
    token = "fcm-token-\"quoted\"-<tag>-" + "A" * 140

    async def go():
        b = await open_binary(r, "push-exact")
        await b.send(wake(token))
        r.proc.wait_for_log(lambda l: "msg=push_wake_sent" in l, timeout=10)
        await b.close()
    asyncio.run(go())

    assert len(google.oauth.requests) == 1
    t = google.oauth.requests[0]
    assert t["path"] == "/token"
    assert t["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert t["headers"]["host"] == f"127.0.0.1:{google.oauth.port}"
    assert int(t["headers"]["content-length"]) == len(t["body"])
    form = t["body"].decode()
    prefix = f"grant_type={GRANT}&assertion="
    assert form.startswith(prefix)
    jwt = form[len(prefix):]
    head, claims, sig = jwt.split(".")
    assert json.loads(b64url(head)) == {"alg": "RS256", "typ": "JWT"}
    c = json.loads(b64url(claims))
    assert set(c) == {"iss", "scope", "aud", "iat", "exp"}
    assert c["iss"] == "relay@pyrycode-mobile.iam.gserviceaccount.com"
    assert c["scope"] == SCOPE and c["aud"] == google.oauth.url + "/token"
    assert abs(c["iat"] - time.time()) < 60 and c["exp"] == c["iat"] + 3600
    # The signature verifies with the key's public half (raises otherwise).
    account_key.public_key().verify(b64url(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())

    assert len(google.fcm.requests) == 1
    f = google.fcm.requests[0]
    assert f["path"] == SEND_PATH
    assert f["headers"]["authorization"] == "Bearer ya29.test-1"
    assert f["headers"]["content-type"] == "application/json"
    expected = b'{"message":{"token":"fcm-token-\\"quoted\\"-\\u003ctag\\u003e-' + b"A" * 140 + b'","android":{"priority":"HIGH"}}}'
    assert f["body"] == expected
    assert json.loads(f["body"])["message"]["token"] == token

    sent = events(r, "push_wake_sent")
    assert len(sent) == 1
    assert sent[0]["token_fp"] == fp(token) and sent[0]["server_id"] == "push-exact"
    assert sent[0]["fcm_message_id"] == "0:1700000000%abc"
    assert outcomes(r) == {"sent": 1, "unregistered": 0, "send_failed": 0, "token_fetch_failed": 0, "dropped": 0}
    assert r.proc.stop() == 0
    log = r.proc.stderr_text()
    for secret in [token, "AAAAAAAAAAAAAAAA", "ya29.test-1", "PRIVATE KEY", jwt[:40]]:
        assert secret not in log


def test_one_token_fetch_serves_many_wakes(relay_bin, start_relay, pki, account_key, google):
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)

    async def go():
        bins = [await open_binary(r, f"cache-{i}") for i in range(5)]
        for round_ in range(2):
            for i, b in enumerate(bins):
                for k in range(3):
                    await b.send(wake(f"tok-{round_}-{i}-{k}"))
            wait_outcomes(r, 15 * (round_ + 1))
        for b in bins:
            await b.close()
    asyncio.run(go())
    assert len(google.oauth.requests) == 1
    assert len(google.fcm.requests) == 30
    assert {f["headers"]["authorization"] for f in google.fcm.requests} == {"Bearer ya29.test-1"}
    assert outcomes(r)["sent"] == 30


def test_bucket_is_six_per_server_id_then_dropped_once_each(relay_bin, start_relay, pki, account_key, google):
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)

    async def go():
        a = await open_binary(r, "bucket-a")
        b = await open_binary(r, "bucket-b")
        for k in range(9):
            await a.send(wake(f"a-{k}"))
        await b.send(wake("b-0"))
        await a.send(wake("", ))                       # empty token
        await a.send(wake("t", platform="apns"))       # not fcm
        wait_outcomes(r, 7)
        await a.close()
        await b.close()
    asyncio.run(go())
    assert len(google.fcm.requests) == 7
    drops = events(r, "binary_forwarder_push_wake_dropped")
    assert sorted(d["reason"] for d in drops) == ["invalid wake"] * 2 + ["rate limited"] * 3
    assert all(d["server_id"] == "bucket-a" for d in drops)
    o = outcomes(r)
    assert o["sent"] == 7 and o["dropped"] == 5


def test_unregistered_token_is_its_own_outcome(relay_bin, start_relay, pki, account_key, google):
    google.fcm_mode = "unregistered"
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)

    async def go():
        b = await open_binary(r, "unreg")
        await b.send(wake("dead-token"))
        wait_outcomes(r, 1)
        await b.close()
    asyncio.run(go())
    failed = events(r, "push_wake_send_failed")
    assert len(failed) == 1
    assert failed[0]["reason"] == "unregistered" and failed[0]["err"] == "status 404 NOT_FOUND UNREGISTERED"
    assert failed[0]["token_fp"] == fp("dead-token")
    assert outcomes(r)["unregistered"] == 1


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["down", "500", "garbage", "slow"])
def test_token_endpoint_fault_fails_the_wake_and_the_next_wake_retries(relay_bin, start_relay, pki, account_key,
                                                                        google, fault):
    token_uri = google.oauth.url + "/token"
    if fault == "down":
        token_uri = f"https://127.0.0.1:{free_port()}/token"     # nothing listens there
    elif fault == "slow":
        google.oauth.hold = True                                  # accepts, reads, never answers
    else:
        google.token_mode = fault
    r = push_relay(start_relay, relay_bin, pki, account_key, token_uri, google.fcm.url)

    async def go():
        b = await open_binary(r, f"tokfault-{fault}")
        started = time.monotonic()
        await b.send(wake("t1"))
        await b.send(wake("t2"))
        o = wait_outcomes(r, 2, timeout=15)
        elapsed = time.monotonic() - started
        assert o["token_fetch_failed"] == 2 and o["sent"] == 0
        if fault == "slow":
            assert 9 <= elapsed < 13, elapsed                     # the 10 s deadline per call
        failed = events(r, "push_wake_send_failed")
        assert {f["reason"] for f in failed} == {"token_fetch_failed"}
        expected = {"down": "token: connect failed", "500": "token: status 500",
                    "garbage": "token: malformed token response", "slow": "token: timeout"}[fault]
        assert {f["err"] for f in failed} == {expected}
        assert not google.fcm.requests
        # The failure was not cached: the next wake fetches again.
        fetches = len(google.oauth.requests)
        await b.send(wake("t3"))
        wait_outcomes(r, 3, timeout=15)
        if fault != "down":
            assert len(google.oauth.requests) == fetches + 1
        await b.close()
    asyncio.run(go())


def test_hanging_fcm_ends_the_wake_at_ten_seconds_while_relaying_goes_on(relay_bin, start_relay, pki, account_key,
                                                                          google):
    google.fcm.hold = True
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)

    async def go():
        b = await open_binary(r, "hang")
        p = await open_phone(r, "hang")
        cid = await phone_conn_id(b, p)
        await b.send(wake("hung"))
        wait_until(lambda: google.fcm.requests, timeout=5, what="FCM request")
        started = time.monotonic()
        # Relaying keeps its pace while the wake hangs: 200 round trips, each well under a second.
        worst = 0.0
        for k in range(200):
            t0 = time.monotonic()
            await p.send(json.dumps({"k": k}))
            env = await recv_json(b)
            await b.send(json.dumps({"conn_id": cid, "frame": {"k": k}}))
            assert json.loads(await asyncio.wait_for(p.recv(), 5)) == {"k": k}
            worst = max(worst, time.monotonic() - t0)
            assert env["conn_id"] == cid
        assert worst < 0.5, worst
        o = wait_outcomes(r, 1, timeout=15)
        assert o["send_failed"] == 1
        assert 8 <= time.monotonic() - started < 13
        failed = events(r, "push_wake_send_failed")
        assert failed[0]["reason"] == "send_failed" and failed[0]["err"] == "timeout"
        await p.close()
        await b.close()
    asyncio.run(go())


def test_fcm_certificate_from_an_unknown_ca_fails_before_any_request(relay_bin, start_relay, pki, account_key):
    g = Google(pki, fcm_cert="rogue")
    try:
        r = push_relay(start_relay, relay_bin, pki, account_key, g.oauth.url + "/token", g.fcm.url)

        async def go():
            b = await open_binary(r, "rogue")
            await b.send(wake("t"))
            wait_outcomes(r, 1)
            await b.close()
        asyncio.run(go())
        assert outcomes(r)["send_failed"] == 1
        assert events(r, "push_wake_send_failed")[0]["err"].startswith("tls")
        assert g.fcm.requests == [] and g.fcm.handshake_failures >= 1
    finally:
        g.close()


def test_fcm_answer_over_4_kib_is_a_failure(relay_bin, start_relay, pki, account_key, google):
    google.fcm_mode = "huge"
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)

    async def go():
        b = await open_binary(r, "huge")
        await b.send(wake("t"))
        wait_outcomes(r, 1)
        await b.close()
    asyncio.run(go())
    assert outcomes(r)["send_failed"] == 1
    assert events(r, "push_wake_send_failed")[0]["err"] == "response too large"


def test_burst_of_1000_wakes_keeps_32_in_flight_and_drops_the_rest(relay_bin, start_relay, pki, account_key, google):
    google.fcm.delay = 2.0
    r = push_relay(start_relay, relay_bin, pki, account_key, google.oauth.url + "/token", google.fcm.url)
    rss_before = scrape(r)[("process_resident_memory_bytes", ())]

    async def go():
        bins = [await open_binary(r, f"burst-{i}") for i in range(10)]
        for k in range(100):
            for i, b in enumerate(bins):
                await b.send(wake(f"burst-{i}-{k}"))
        o = wait_outcomes(r, 32, timeout=20)
        for b in bins:
            await b.close()
        return o
    o = asyncio.run(go())
    # 10 server-ids × 6 = 60 pass their buckets; 32 of those are in flight, 28 wait for nothing.
    assert o == {"sent": 32, "unregistered": 0, "send_failed": 0, "token_fetch_failed": 0, "dropped": 968}
    assert len(google.fcm.requests) == 32 and google.fcm.max_active == 32
    assert len(google.oauth.requests) == 1
    rss_after = scrape(r)[("process_resident_memory_bytes", ())]
    assert rss_after - rss_before < 16 * 1024 * 1024
    # Budgeted: at most 5 lines per connection per 10 s plus summaries.
    assert len(events(r, "binary_forwarder_push_wake_dropped")) <= 50
