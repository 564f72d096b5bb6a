"""The review pages end to end: Debian's chromium (Playwright) against serve.py on a loopback port.

Log in, work the queue with the keyboard, correct a case and see it leave the queue and enter the
history, forward one, save from two tabs, read the overview and its chart, fit a 375 px phone,
and be refused without a reviewer's key. Screenshots of every page go to ``test-artifacts/review/``.

Playwright's own browser downloads are never used: the tests launch the system chromium
(``apt-get install chromium fonts-thai-tlwg``, which ``.ci/run`` does). Without it they skip, or
fail when ``CI`` is set, so a CI machine cannot pass by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import H_INTAKE, H_REVIEWER, INTAKE, REVIEWER, TEXTS, Server

from triage.testing import REPO

ARTIFACTS = REPO / "test-artifacts" / "review"
PHONE = "081-234-5678"
PAGES = ["/review", "/review/overview", "/review/cases/1"]


def chromium_path() -> str:
    """Debian's chromium, or the binary TRIAGE_TEST_CHROMIUM names."""
    return os.environ.get("TRIAGE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing() -> str | None:
    if not Path(chromium_path()).is_file():
        return (f"no chromium at {chromium_path()} (apt-get install chromium fonts-thai-tlwg, "
                "or set TRIAGE_TEST_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


MISSING = _missing()
if MISSING and not os.environ.get("CI"):
    pytest.skip(MISSING, allow_module_level=True)


@pytest.fixture(scope="session", autouse=True)
def _browser_present() -> None:
    """With CI set, a missing browser fails each test here, before the session's model is trained."""
    if MISSING:
        pytest.fail(f"{MISSING}; CI is set, so the browser tests must run (see .ci/run)", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--disable-gpu", "--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser: Any, tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("review-srv") / "data", small_model_dir,
                 TRIAGE_REVIEW_THRESHOLD="0.99")  # every case goes to review
    try:
        items = [{"text": t, "district": d, "source": "line"} for d in ("บางรัก", "ดุสิต", None) for t in TEXTS]
        # urgent (a sparking wire and a fallen pole), so it waits in the queue until someone accepts it
        items.append({"text": f"นายสมชาย ใจดี โทร {PHONE} แจ้งว่าสายไฟช็อตมีประกายไฟ เสาไฟฟ้าล้มขวางถนน อันตรายมาก"})
        r = httpx.post(f"{srv.url}/v1/triage/batch", json={"items": items}, headers=H_INTAKE, timeout=60)
        assert r.status_code == 200, r.text
        yield srv
    finally:
        srv.stop()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str, key: str = REVIEWER, name: str = "สมศรี ตรวจดี") -> None:
    page.goto(f"{url}/review/login")
    page.get_by_label("ชื่อผู้ตรวจทาน").fill(name)
    page.get_by_label("กุญแจ API").fill(key)
    page.get_by_role("button", name="เข้าสู่ระบบ").click()


@pytest.fixture()
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh browser context, logged in as a reviewer, at the queue."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="th-TH")
    context.set_default_timeout(30_000)
    pg = context.new_page()
    problems: list[str] = []  # script errors and Content-Security-Policy refusals
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    log_in(pg, server.url)
    pg.wait_for_url(f"{server.url}/review")
    yield pg
    context.close()
    assert problems == []


def queue_ids(page: Any) -> list[int]:
    return [int(x.split("-")[1]) for x in page.locator("[data-case-row]").evaluate_all("rs => rs.map(r => r.id)")]


def api_queue(server: Server) -> list[dict[str, Any]]:
    return httpx.get(f"{server.url}/v1/review/queue?limit=50", headers=H_REVIEWER).json()["items"]


def test_every_page_is_refused_without_a_reviewer(browser, server):
    context = browser.new_context()
    pg = context.new_page()
    for path in PAGES:
        pg.goto(server.url + path)
        assert pg.url.startswith(f"{server.url}/review/login"), path
        assert pg.locator("[data-case-row], #chart-topic, #history").count() == 0
    shot(pg, "login")
    log_in(pg, server.url, key=INTAKE)
    assert pg.get_by_role("alert").inner_text().count("reviewer") >= 1
    assert pg.url.startswith(f"{server.url}/review/login")
    assert not [c for c in context.cookies() if c["name"] == "triage_review"]
    pg.goto(server.url + "/review")
    assert pg.url.startswith(f"{server.url}/review/login")
    context.close()
    for path in PAGES:
        assert httpx.get(server.url + path, headers=H_INTAKE).status_code == 403
        assert httpx.get(server.url + path, follow_redirects=False).status_code == 303


def test_queue_is_thai_masked_most_urgent_first_and_keyboard_accepts(page, server):
    assert page.locator("html").get_attribute("lang") == "th"
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert font.startswith('"Noto Sans Thai", Loma, Garuda, TlwgTypo')
    ids = queue_ids(page)
    assert ids == [c["id"] for c in api_queue(server)]  # the store's order: most urgent, then oldest
    phone_case = next(c for c in api_queue(server) if "[phone]" in c["masked_text"])
    assert f"case-{phone_case['id']}" in page.content() and PHONE not in page.content()  # masked in the queue
    assert page.locator(".chip").first.inner_text().endswith("%")
    shot(page, "queue")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    total = int(re.match(r"\d+", page.locator("#queue-total").inner_text()).group())
    page.keyboard.press("j")
    current = page.locator("[data-case-row].current")
    chosen = int(current.get_attribute("id").split("-")[1])
    assert chosen == ids[1]
    with page.expect_navigation():
        page.keyboard.press("a")
    assert "msg=accepted" in page.url
    assert f"#{chosen}" in page.get_by_role("status").first.inner_text()
    assert chosen not in queue_ids(page)
    assert int(re.match(r"\d+", page.locator("#queue-total").inner_text()).group()) == total - 1
    assert page.locator("[data-case-row].current").get_attribute("id") == f"case-{ids[2]}"  # focus stays in place
    history = httpx.get(f"{server.url}/v1/cases/{chosen}/history", headers=H_REVIEWER).json()["events"]
    assert history[-1]["kind"] == "correction" and "สมศรี" in history[-1]["actor"]


def test_correct_a_case_it_leaves_the_queue_and_enters_the_history(page, server):
    first = queue_ids(page)[0]
    page.keyboard.press("o")
    page.wait_for_url(f"{server.url}/review/cases/{first}")
    case = httpx.get(f"{server.url}/v1/cases/{first}", headers=H_REVIEWER).json()
    assert case["text"] in page.locator(".fulltext").inner_text()  # opened: the full text
    shot(page, "case")
    levels = httpx.get(f"{server.url}/v1/model", headers=H_REVIEWER).json()["labels"]["urgency"]
    other = next(u for u in levels if u != case["urgency"])
    page.locator(f'input[name="urgency"][value="{other}"]').check()
    page.get_by_label("เหตุผล").fill("ไฟฟ้าช็อตเป็นอันตราย ควรด่วน")
    page.get_by_role("button", name="บันทึก Save", exact=True).click()
    page.wait_for_url(re.compile(r".*msg=saved$"))
    assert "บันทึก" in page.get_by_role("status").first.inner_text()
    history = page.locator("#history").inner_text()
    assert "แก้ไขผล" in history and "ไฟฟ้าช็อตเป็นอันตราย ควรด่วน" in history and "สมศรี ตรวจดี" in history
    assert page.locator("table.audit").count() == 1
    shot(page, "case-saved")
    page.get_by_role("link", name="คิว Queue").first.click()
    page.wait_for_url(f"{server.url}/review")
    assert first not in queue_ids(page)
    assert httpx.get(f"{server.url}/v1/cases/{first}", headers=H_REVIEWER).json()["urgency"] == other


def test_forward_a_case(page, server):
    target = queue_ids(page)[0]
    page.goto(f"{server.url}/review/cases/{target}")
    page.get_by_label("ส่งต่อไปยังหน่วยงาน").fill("การไฟฟ้านครหลวง เขตคลองเตย")
    page.locator("#forward-note").fill("สายไฟเป็นของการไฟฟ้า")
    page.get_by_role("button", name="ส่งต่อ Forward").click()
    page.wait_for_url(re.compile(r".*msg=moved$"))
    assert page.locator("#holder").inner_text() == "การไฟฟ้านครหลวง เขตคลองเตย"
    history = page.locator("#history").inner_text()
    assert "ส่งต่อ" in history and "สายไฟเป็นของการไฟฟ้า" in history
    case = httpx.get(f"{server.url}/v1/cases/{target}", headers=H_REVIEWER).json()
    assert case["status"] == "forwarded" and case["agency_path"][-1] == "การไฟฟ้านครหลวง เขตคลองเตย"


def test_saving_from_two_tabs_loses_nothing_and_says_so(page, server):
    target = queue_ids(page)[0]
    second = page.context.new_page()
    for tab in (page, second):
        tab.goto(f"{server.url}/review/cases/{target}")
    page.get_by_label("เหตุผล").fill("แท็บแรก")
    page.get_by_role("button", name="บันทึก Save", exact=True).click()
    page.wait_for_url(re.compile(r".*msg=saved$"))
    second.get_by_label("เหตุผล").fill("แท็บที่สอง: หัวข้อผิด")
    second.get_by_role("button", name="บันทึก Save", exact=True).click()
    alert = second.get_by_role("alert")
    assert "แก้ไขโดยผู้อื่นหรือในแท็บอื่น" in alert.inner_text() and "NOT saved" in alert.inner_text()
    assert second.get_by_label("เหตุผล").input_value() == "แท็บที่สอง: หัวข้อผิด"
    shot(second, "case-conflict")
    events = httpx.get(f"{server.url}/v1/cases/{target}/history", headers=H_REVIEWER).json()["events"]
    assert [e["note"] for e in events if e["kind"] == "correction"] == [events[-1]["note"]]
    assert "แท็บแรก" in events[-1]["note"]


def test_overview_shows_counts_chart_and_model(page, server):
    page.get_by_role("link", name="ภาพรวม Overview").click()
    page.wait_for_url(f"{server.url}/review/overview")
    model = httpx.get(f"{server.url}/v1/model", headers=H_REVIEWER).json()
    assert page.locator("#model-version").inner_text() == model["version"]
    assert page.locator("#chart-topic circle").count() >= 1 and page.locator("#chart-agency path").count() >= 1
    assert page.locator("#per-agency tr").count() >= 1 and page.locator("#waiting tbody tr").count() >= 1
    assert page.locator("#corrections-since").inner_text().isdigit()
    shot(page, "overview")


def test_every_page_fits_a_phone_without_sideways_scrolling(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.goto(f"{server.url}/review/login")
    shot(pg, "phone-login")
    log_in(pg, server.url)
    pg.wait_for_url(f"{server.url}/review")
    case_id = queue_ids(pg)[0]
    for name, path in (("queue", "/review"), ("case", f"/review/cases/{case_id}"), ("overview", "/review/overview")):
        pg.goto(server.url + path)
        width = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path} is {width[0]} px wide at a {width[1]} px viewport"
        shot(pg, f"phone-{name}")
    context.close()


def test_citizen_tracking_page_is_thai_escaped_and_takes_a_rating(browser, server):
    out = httpx.post(f"{server.url}/v1/triage", headers=H_INTAKE, timeout=60, json={
        "text": f"นางสาวมาลี ดีใจ โทร {PHONE} ถนนหน้าบ้านเป็นหลุม", "district": "บางรัก",
        "reporter_contact": PHONE}).json()
    code, case_id = out["tracking_code"], out["case_id"]
    hostile = '<b>รับเรื่องแล้ว</b> & <script>alert("x")</script>'
    for body in ({"status": "assigned", "note": "ภายใน: ห้ามบอกผู้ร้อง", "public_note": hostile},
                 {"status": "resolved", "public_note": "ซ่อมถนนเรียบร้อยแล้ว"}):
        r = httpx.post(f"{server.url}/v1/cases/{case_id}/status", json={"actor": "นายช่าง ใจดี", **body},
                       headers=H_REVIEWER)
        assert r.status_code == 200, r.text
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, locale="th-TH")
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.goto(f"{server.url}/track/{code}")
    assert pg.locator("html").get_attribute("lang") == "th"
    assert pg.locator("#status").inner_text() == "ดำเนินการเสร็จสิ้น"
    assert pg.locator("#steps li").count() == 3
    notes = pg.locator("#steps .note").all_inner_texts()
    assert notes == [hostile, "ซ่อมถนนเรียบร้อยแล้ว"]  # shown as text, never as markup
    assert pg.locator("#steps b, #steps script").count() == 0
    content = pg.content()
    for secret in ("ภายใน", "ห้ามบอก", "นายช่าง", PHONE, "มาลี", "ถนนหน้าบ้าน"):
        assert secret not in content, secret
    width = pg.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]
    shot(pg, "track")
    pg.get_by_label("4 ดาว").check()
    pg.get_by_label("ความคิดเห็น (ถ้ามี)").fill("ยังมีหลุมอีกจุด")
    pg.get_by_label("ปัญหายังไม่ได้รับการแก้ไข ขอเปิดเรื่องอีกครั้ง").check()
    pg.get_by_role("button", name="ส่งความคิดเห็น").click()
    pg.wait_for_url(re.compile(r".*msg=reopened$"))
    assert "ส่งกลับไปยังหน่วยงาน" in pg.get_by_role("status").inner_text()
    assert pg.locator("#status").inner_text() == "หน่วยงานรับเรื่องแล้ว"
    assert pg.locator("#steps li").last.inner_text().find("เปิดเรื่องอีกครั้ง") >= 0
    shot(pg, "track-reopened")
    case = httpx.get(f"{server.url}/v1/cases/{case_id}", headers=H_REVIEWER).json()
    assert case["status"] == "assigned"
    pg.goto(f"{server.url}/track/NOSUCHCODE1234567890")
    assert "ไม่พบเรื่อง" in pg.get_by_role("alert").inner_text()
    context.close()
    assert problems == [] or all("404" in p for p in problems)
