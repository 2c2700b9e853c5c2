"""Attacks on the control API from a web page or a guess: no token, a wrong token, a
rebound DNS name (foreign Host), a cross-site form or fetch (Origin, Sec-Fetch-Site,
a non-JSON body). Each is refused before any handler runs."""
from __future__ import annotations

from .conftest import Served


def test_no_token_or_a_wrong_token_is_refused(served: Served) -> None:
    assert served.request("GET", "/v1/ps", token=None)[0] == 401
    assert served.request("GET", "/v1/ps", token="guess")[0] == 401
    assert served.request("GET", "/metrics", token=None)[0] == 401
    assert served.request("GET", "/v1/ps", token=served.d.token + "x")[0] == 401
    assert served.request("GET", "/v1/ps")[0] == 200


def test_dns_rebinding_host_is_refused_even_with_the_token(served: Served) -> None:
    for host in ("evil.example", f"evil.example:{served.d.port}", "127.0.0.1", f"127.0.0.1:{served.d.port + 1}"):
        st, got = served.request("GET", "/v1/ps", headers={"Host": host})
        assert st == 421, host
    assert served.request("GET", "/", token=None, headers={"Host": "evil.example"})[0] == 421
    assert served.request("GET", "/v1/ps", headers={"Host": f"localhost:{served.d.port}"})[0] == 200


def test_cross_site_state_changes_are_refused(served: Served) -> None:
    kill = {"signal": "KILL"}
    root = served.d.root_pid
    path = f"/v1/procs/{root}/signal"
    assert served.request("POST", path, kill, headers={"Origin": "http://evil.example"})[0] == 403
    assert served.request("POST", path, kill, headers={"Origin": "null"})[0] == 403
    assert served.request("POST", path, kill, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert served.request("POST", path, kill, headers={"Content-Type": "text/plain"})[0] == 415
    assert served.request("POST", path, kill, headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert served.request("POST", "/v1/stop", {}, headers={"Origin": "http://evil.example"})[0] == 403
    assert served.d.stopping is None
    own = f"http://127.0.0.1:{served.d.port}"
    assert served.request("POST", path, kill, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"})[0] == 409


def test_dashboard_page_needs_no_token_but_holds_no_data(served: Served) -> None:
    st, page = served.request("GET", "/", token=None)
    assert st == 200 and served.d.token not in page
