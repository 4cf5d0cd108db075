"""`edge fleet`'s database, checks and dashboard without a broker: on SQLite and on a real PostgreSQL
(a throw-away cluster), with payloads made by the nightly job's own builders; hostile payloads and
web requests without log-in."""
from __future__ import annotations

import copy
import http.cookiejar
import json
import re
import urllib.error
import urllib.request

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("jsonschema")
pytest.importorskip("jinja2")

from fleet_support import PostgresCluster, simulate_fleet  # noqa: E402

from edge import EdgeError  # noqa: E402
from edge.apps.fleet.ingest import Checker, subscriptions  # noqa: E402
from edge.apps.fleet.store import SCHEMA_VERSION, FleetStore, Message, database_url  # noqa: E402


@pytest.fixture(scope="module")
def fleet_payloads(tmp_path_factory):
    """3 gateways x 3 people x 12 nights from the gateway's code (one person in three drifts: flags)."""
    return simulate_fleet(tmp_path_factory.mktemp("gateways"), 3, 3, 12)


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = database_url(str(tmp_path / "fleet.sqlite"))
    else:
        url = database_url(request.getfixturevalue("postgres").new_database())
    s = FleetStore(url)
    yield s
    s.close()


def _messages(fleet, checker, nights=None):
    out = []
    for its in fleet.values():
        for n, (_night, messages) in enumerate(its):
            if nights is None or n in nights:
                for _mid, topic, payload, _retain in messages:
                    checked = checker.check(topic, payload)
                    assert not isinstance(checked, str), checked
                    out.append(checked)
    return out


def test_each_message_is_stored_once_and_the_newest_night_wins(store, fleet_payloads):
    checker = Checker("edge", 65536)
    everything = _messages(fleet_payloads, checker)
    assert store.store_batch(everything[:50]).stored == 50
    again = store.store_batch(everything[:80])  # 50 repeats (a redelivery) and 30 new
    assert (again.stored, again.duplicates) == (30, 50)
    # Late nights first, then the early ones (a gateway catching up, two consumers out of order).
    late = [m for m in everything[80:] if m.payload.get("night", "") >= "2026-11-08"]
    early = [m for m in everything[80:] if m not in late]
    store.store_batch(late)
    store.store_batch(early)
    assert store.count("messages") == len(everything)
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        nights = {r[0] for r in conn.execute(sa.select(store.t["people"].c.night))}
        assert nights == {"2026-11-13"}, "an older night must never replace a newer one"
        days = conn.execute(sa.select(sa.func.count()).select_from(store.t["person_days"])).scalar()
        wanted = {(m.payload["gateway"], m.payload["person"], m.payload["last_day"]["day"])
                  for m in everything if m.kind == "nightly" and m.payload["last_day"]}
        assert days == len(wanted)
        flags = conn.execute(sa.select(store.t["flags"]).where(store.t["flags"].c.open.is_(True))).all()
    last = {(m.payload["gateway"], m.payload["person"]): m.payload for m in everything if m.kind == "nightly"
            and m.payload["night"] == "2026-11-13"}
    assert sorted((f.gateway, f.person, f.measure) for f in flags) == sorted(
        (g, p, fl["measure"]) for (g, p), payload in last.items() for fl in payload["flags"])
    assert flags, "the drifting people must have open flags"


def test_flags_close_when_a_night_no_longer_has_them_and_acks_stay(store, fleet_payloads):
    import sqlalchemy as sa

    checker = Checker("edge", 65536)
    nightly = [m for m in _messages(fleet_payloads, checker) if m.kind == "nightly" and m.payload["flags"]]
    flagged = nightly[-1]
    store.store_batch([flagged])
    flags = store.t["flags"]
    with store.engine.begin() as conn:
        conn.execute(flags.update().values(acked_by="nurse1", acked_utc="2026-11-14T09:00:00Z", ack_note="called"))
    repeat = copy.deepcopy(flagged.payload)  # the next night still flags it: open, acknowledgement kept
    repeat.update(message_id=repeat["message_id"] + "-b", generated_utc="2026-11-14T03:00:00Z", night="2026-11-14")
    store.store_batch([Message("nightly", flagged.source, repeat)])
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(flags.c.open, flags.c.acked_by)).all()
    assert rows and all(r == (True, "nurse1") for r in rows)
    cleared = copy.deepcopy(repeat)
    cleared.update(message_id=repeat["message_id"] + "-c", night="2026-11-15", flags=[])
    store.store_batch([Message("nightly", flagged.source, cleared)])
    with store.engine.connect() as conn:
        assert {r[0] for r in conn.execute(sa.select(flags.c.open))} == {False}


def test_migrations_are_versioned_and_run_once(store):
    with store.engine.connect() as conn:
        assert store.version(conn) == SCHEMA_VERSION
    assert store.migrate() == SCHEMA_VERSION  # nothing to do the second time
    meta = store.t["meta"]
    with store.engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(EdgeError, match="newer than this edge"):
        FleetStore(store.url)


def test_hostile_payloads_become_dead_letters_with_their_reason(fleet_payloads):
    checker = Checker("edge", 4096)
    _mid, topic, payload, _ = fleet_payloads["gw000"][5][1][0]
    good = json.loads(payload)
    gateway, person = good["gateway"], good["person"]

    def variant(**changes):
        data = copy.deepcopy(good)
        data.update(changes)
        return json.dumps(data).encode()

    cases = {
        "edge/gw000/p00/extra/nightly": (payload, "is not <prefix>"),
        "elsewhere/gw000/p00/nightly": (payload, "is outside edge/"),
        f"edge/{gateway}/{person}/nightly#big": (payload, "is not <prefix>"),
        f"edge/{gateway}/{person}/nightly": (b"x" * 5000, "over fleet.max_payload_bytes"),
    }
    for t, (body, reason) in cases.items():
        assert reason in checker.check(t, body), t
    nightly = f"edge/{gateway}/{person}/nightly"
    assert "not UTF-8 JSON" in checker.check(nightly, b"\xff\xfe{")
    assert "not UTF-8 JSON" in checker.check(nightly, payload.replace(b'"audio_s": ', b'"audio_s": NaN, "x": '))
    assert "not UTF-8 JSON" in checker.check(nightly, b"[" * 2000 + b"]" * 2000)  # nested past the recursion limit
    assert "not an object" in checker.check(nightly, b"[1, 2]")
    assert "not valid against nightly_payload" in checker.check(nightly, variant(flags="none"))
    assert "not valid against nightly_payload" in checker.check(nightly, variant(secret_audio="AAAA"))
    assert "forged or misrouted" in checker.check(f"edge/gw999/{person}/nightly", payload)
    assert "the topic names person" in checker.check(f"edge/{gateway}/p99/nightly", payload)
    assert "does not start with the sender" in checker.check(nightly, variant(message_id="gw001/p00/x/1"))
    assert "not valid against gateway_state" in checker.check(f"edge/{gateway}/state", payload)
    assert isinstance(checker.check(nightly, payload), Message)


def test_the_fast_validator_and_jsonschema_agree(fleet_payloads):
    """fastjsonschema decides (speed), jsonschema explains: on valid payloads and on mutations of them."""
    import jsonschema

    checker = Checker("edge", 65536)
    rng = __import__("random").Random(5)
    samples = [(kind, json.loads(payload)) for its in fleet_payloads.values() for _n, ms in its[:3]
               for _m, topic, payload, _r in ms for kind in ["state" if topic.endswith("/state") else "nightly"]]
    mutations = [lambda d: d.pop(rng.choice(sorted(d))), lambda d: d.update(extra=1),
                 lambda d: d.update(night="2026-13-99x"), lambda d: d.update(flags=[{"measure": "mood"}]),
                 lambda d: d.update(message_id=""), lambda d: d.update(days_with_data=-1),
                 lambda d: d.update(schema="edge-nightly/2"), lambda d: d.update(persons_flagged=1.5)]
    checked = 0
    for kind, data in samples:
        for mutate in [None, *mutations]:
            candidate = copy.deepcopy(data)
            if mutate is not None:
                mutate(candidate)
            fast_ok = True
            try:
                checker.fast[kind](candidate)
            except checker._fast_error:
                fast_ok = False
            assert fast_ok == checker.validators[kind].is_valid(candidate), (kind, candidate)
            checked += 1
    assert checked > 100 and jsonschema


def test_dead_letters_are_kept_once_and_a_bad_message_never_stops_a_batch(tmp_path, fleet_payloads):
    store = FleetStore(database_url(str(tmp_path / "f.sqlite")))
    checker = Checker("edge", 65536)
    good = _messages(fleet_payloads, checker, nights={0})
    bad = [("edge/gw000/p00/nightly", "not UTF-8 JSON", b"\xff" * 10)]
    result = store.store_batch(good, bad)
    assert (result.stored, result.dead) == (len(good), 1)
    store.store_batch([], bad)  # the same bad message again: one dead letter
    assert store.count("dead") == 1 and store.count("messages") == len(good)


def test_subscriptions_plain_and_shared():
    assert subscriptions("edge", None) == ("edge/+/+/nightly", "edge/+/state", "edge/+/session")
    assert subscriptions("clinic/a", "grp")[0] == "$share/grp/clinic/a/+/+/nightly"


def test_database_urls():
    assert database_url("out/f.sqlite") == "sqlite:///out/f.sqlite"
    assert database_url("postgresql://u@/db?host=/run/pg").startswith("postgresql+psycopg://u@/db")
    with pytest.raises(EdgeError, match="cannot be opened"):
        FleetStore("sqlite:////proc/no/such/dir/f.sqlite")


# ----------------------------------------------------------------------------- the dashboard over HTTP
@pytest.fixture
def dashboard(tmp_path, fleet_payloads):
    from edge.apps.fleet.users import Users
    from edge.apps.fleet.views import Views
    from edge.apps.fleet.web import Dashboard, DashboardServer

    store = FleetStore(database_url(str(tmp_path / "f.sqlite")))
    store.store_batch(_messages(fleet_payloads, Checker("edge", 65536)))
    users = Users(store)
    users.add("nurse1", "correct horse battery")
    server = DashboardServer("127.0.0.1", 0, Dashboard(Views(store, 36, 50), users, 1.0)).start()
    yield server, store
    server.close()
    store.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _client():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect), jar


def _call(opener, url, data=None, headers=None):
    request = urllib.request.Request(url, data=None if data is None else urllib.parse.urlencode(data).encode(),
                                     headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def _log_in(server, user="nurse1", password="correct horse battery"):
    opener, jar = _client()
    status, page, _ = _call(opener, server.url + "login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    status, _, headers = _call(opener, server.url + "login", {"csrf": csrf, "user": user, "password": password})
    return opener, status, headers


def test_web_requests_without_log_in_are_refused(dashboard):
    server, store = dashboard
    opener, _ = _client()
    for path in ("", "gateways", "person/gw000/p00", "audit", "dead-letters", "kiosks"):
        status, _, headers = _call(opener, server.url + path)
        assert (status, headers["Location"]) == (303, "/login"), path
    assert _call(opener, server.url + "ack", {"flag": "1", "note": "x", "csrf": "x"})[0] == 403
    assert _call(opener, server.url + "login", {"user": "nurse1", "password": "correct horse battery"})[0] == 403
    _, status, _ = _log_in(server, password="wrong password!")
    assert status == 401
    status, _, _ = _call(_client()[0], server.url, headers={"Host": "evil.example"})
    assert status == 403  # DNS rebinding: a Host header that is not this server's
    assert store.count("logins") == 0


def test_log_in_ack_with_csrf_and_the_audit_log(dashboard):
    server, store = dashboard
    opener, status, headers = _log_in(server)
    assert status == 303 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    status, page, headers = _call(opener, server.url)
    assert status == 200 and "no-store" in headers["Cache-Control"] and "script-src" not in headers[
        "Content-Security-Policy"]
    assert "A screening aid, not a diagnosis" in page
    rows = re.findall(r'<tr class="(flagged|)">', page)
    assert rows and rows[0] == "flagged" and "flagged" not in rows[rows.index(""):], "open flags first"
    person = re.search(r'href="/person/([^"]+)"', page).group(1)
    status, page, _ = _call(opener, server.url + "person/" + person)
    assert status == 200 and page.count("<svg") == 8 and 'class="band"' in page
    flag = re.search(r'name="flag" value="(\d+)"', page).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert _call(opener, server.url + "ack", {"flag": flag, "note": "called", "csrf": "forged"})[0] == 403
    other, _, _ = _log_in(server)  # another log-in's token is not this one's
    assert _call(other, server.url + "ack", {"flag": flag, "note": "called", "csrf": csrf})[0] == 403
    status, _, headers = _call(opener, server.url + "ack", {"flag": flag, "note": "called, all well", "csrf": csrf})
    assert status == 303 and headers["Location"] == "/person/" + person
    status, page, _ = _call(opener, server.url + "audit")
    assert "acknowledge" in page and "called, all well" in page and "nurse1" in page
    status, page, _ = _call(opener, server.url + "person/" + person)
    assert "Acknowledged by nurse1" in page
