"""The dashboard in headless Chromium, on the demo's data behind a real ``tether serve`` with keys on.

Every page opens and its charts draw data points; one rollout is promoted to the end and another aborted with
clicks (each decision recorded with the deployer's key as actor, on the audit trail); a viewer sees no mutating
button and a forged POST with a viewer's session, or without the CSRF token, is refused; an audit record's
inclusion proof verifies in the browser; pages fit a phone's width. Screenshots go to ``TETHER_SCREENSHOTS``
(the README's are made this way) or to a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ui.browser import LAUNCH_ARGS, Traffic, api, chromium, create_keys, demo_store, serving, wait_for

pytestmark = pytest.mark.slow

PLAN = {
    "steps": [5, 50, 100],
    "bake_seconds": 3600,  # never advances by itself: the clicks decide
    "min_samples": 20,
    "max_step_seconds": 7200,
    "watch_seconds": 2,
    "guardrails": {"error_rate": {"margin": 0.5}},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    exe = chromium()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("demo")
    home = demo_store(root)
    keys = create_keys(home)
    data = root / "fraud-project/data/transactions.parquet"
    with serving(home) as url, Traffic(url, keys["client"], data) as load, sync_playwright() as p:
        wait_for(lambda: load.ok > 0, timeout=120, what="the champion's instance to answer")
        browser = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS)
        try:
            yield {"url": url, "keys": keys, "browser": browser, "load": load, "root": root}
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("TETHER_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def signed_in(site, role: str, **context):
    ctx = site["browser"].new_context(viewport={"width": 1280, "height": 900}, **context)
    page = ctx.new_page()
    page.on("dialog", lambda d: d.accept())  # the confirmations of actions
    page.goto(site["url"] + "/rollouts/fraud")
    assert "/login" in page.url, "an anonymous visitor is sent to sign in"
    page.fill("input[name=key]", site["keys"][role])
    page.click("button[type=submit]")
    page.wait_for_url(site["url"] + "/rollouts/fraud")
    return ctx, page


def reload(page) -> bool:
    page.reload()
    return True


def points(page, selector: str) -> int:
    found = page.eval_on_selector_all(selector, "els => els.map(e => Number(e.dataset.points || 0))")
    return max(found, default=0)


def state(page) -> str:
    return page.get_attribute("#live", "data-state") or ""


def test_pages_charts_rollout_clicks_roles_and_proofs(site, shots):
    url, keys = site["url"], site["keys"]
    code, ro = api(
        f"{url}/v1/rollouts/fraud",
        keys["admin"],
        "POST",
        {"candidate": "fraud/2", "plan": PLAN, "force": True, "reason": "browser test"},
    )
    assert code == 201, ro
    ctx, page = signed_in(site, "deployer")

    # The rollout page: live charts with data, progress toward the next step, then clicks to the end.
    charts = ("#chart-errors", "#chart-latency", "#chart-weights", "[id^=chart-seq-]")
    wait_for(
        lambda: reload(page) and all(points(page, c) > 0 for c in charts), timeout=120, every=2, what="rollout charts"
    )
    assert page.locator("#progress").count() == 1 and "bake time" in page.inner_text("#progress").lower()
    # Time axes span the rollout's minutes, not years: uPlot padded a lone point's range to years (and a flat
    # rate to 0-100) before the page set those ranges itself; a rollout's first point is alone.
    spans = page.eval_on_selector_all(
        "[data-chart]",
        "els => els.filter(e => e._plot && e._plot.scales.x.time)"
        ".map(e => e._plot.scales.x.max - e._plot.scales.x.min)",
    )
    assert spans and max(spans) < 86_400, spans
    page.screenshot(path=str(shots / "rollout.png"), full_page=True)
    for expected in ("50.0%", "100.0%"):
        page.fill("form[action$='/promote'] input[name=reason]", "looks good")
        page.click("button[data-action=promote]")
        wait_for(lambda e=expected: page.inner_text("#weight") == e, timeout=30, what=f"weight {expected}")
    wait_for(lambda: reload(page) and state(page) == "completed", timeout=60, every=1, what="the promotion")

    # A second rollout, aborted with a click.
    code, _ = api(
        f"{url}/v1/rollouts/fraud",
        keys["admin"],
        "POST",
        {"candidate": "fraud/3", "plan": PLAN, "force": True, "reason": "to abort"},
    )
    assert code == 201
    page.reload()
    page.fill("form[action$='/abort'] input[name=reason]", "not today")
    page.click("button[data-action=abort]")
    wait_for(lambda: state(page) == "aborted", timeout=30, what="the abort")
    code, hist = api(f"{url}/v1/rollouts/fraud/history", keys["viewer"])
    first, second = hist["items"][1], hist["items"][0]
    assert (first["state"], second["state"]) == ("completed", "aborted")

    # Every click is a decision with the deployer's key as actor, and on the audit trail.
    def on_trail():
        _, recs = api(f"{url}/v1/audit/records?kind=rollout&limit=50", keys["viewer"])
        mine = {r["payload"]["kind"] for r in recs["items"] if (r["payload"] or {}).get("actor") == "deployer-key"}
        return {"promote", "abort"} <= mine

    wait_for(on_trail, timeout=60, every=1, what="the dashboard's promote and abort on the audit trail")

    # Every page opens; its charts draw data points.
    pages = {
        "models": ("/", "#models"),
        "model": ("/models/fraud", "#versions"),
        "version": ("/versions/fraud/2", "#triad"),
        "compare": ("/compare?a=fraud/1&b=fraud/2", "#compare"),
        "drift": ("/drift/fraud", "#anomalies"),
        "llm": ("/llm/support", "#totals"),
        "audit": ("/audit?model=fraud", "#records"),
    }
    for name, (path, marker) in pages.items():
        response = page.goto(url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert page.locator(marker).count() == 1, path
        if name == "drift":
            wait_for(lambda: reload(page) and points(page, "[id^=dist-]") > 0, timeout=90, every=2, what="drift charts")
        if name == "llm":
            assert points(page, "#llm-tokens") > 0 and points(page, "#llm-scores") > 0
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.goto(url + "/audit?model=fraud&kind=prediction")
    page.click("#records tbody tr a")

    def proof_checked() -> str | None:
        # The newest record may not be sealed yet when clicked (the page then says so: sealed every 2 s, and a
        # loaded CI machine clicked one in that gap): reload until its proof is on the page, then let it check.
        if page.locator("#proof-browser").count() == 0:
            reload(page)
            return None
        return page.get_attribute("#proof-browser", "data-verified")

    wait_for(proof_checked, timeout=60, every=1, what="the proof check")
    assert page.get_attribute("#proof-browser", "data-verified") == "yes"
    page.screenshot(path=str(shots / "trace.png"), full_page=True)

    # A deployer's POST without the form's CSRF token is refused.
    assert ctx.request.post(url + "/rollouts/fraud/pause", form={"reason": "x"}).status == 403

    # A viewer sees no mutating button, and a forged POST with a viewer's session is refused.
    vctx, viewer = signed_in(site, "viewer")
    assert viewer.locator("#actions").count() == 0 and viewer.locator("button[data-action]").count() == 0
    token = viewer.get_attribute("form[action='/logout'] input[name=csrf]", "value")
    code, _ = api(
        f"{url}/v1/rollouts/fraud",
        keys["admin"],
        "POST",
        {"candidate": "fraud/3", "plan": PLAN, "force": True, "reason": "for the viewer"},
    )
    assert code == 201, "fraud/2 is the champion now: the viewer's target is a rollout of fraud/3"
    forged = vctx.request.post(url + "/rollouts/fraud/abort", form={"csrf": token, "reason": "forged"})
    assert forged.status == 403 and "may not deploy" in forged.text()
    _, status = api(f"{url}/v1/rollouts/fraud", keys["viewer"])
    assert status["rollout"]["state"] == "running", "the forged abort changed nothing"
    api(f"{url}/v1/rollouts/fraud/abort", keys["admin"], "POST", {"reason": "test over"})

    # A phone's width: no page scrolls sideways.
    phone = site["browser"].new_context(viewport={"width": 390, "height": 844}, storage_state=vctx.storage_state())
    mobile = phone.new_page()
    for name, (path, _) in {**pages, "rollout": ("/rollouts/fraud", "")}.items():
        mobile.goto(url + path)
        wide = mobile.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"{path} is {wide}px wider than a phone"
    mobile.goto(url + "/rollouts/fraud")
    mobile.screenshot(path=str(shots / "rollout-phone.png"), full_page=True)
    for c in (ctx, vctx, phone):
        c.close()
    assert site["load"].sent > 0
