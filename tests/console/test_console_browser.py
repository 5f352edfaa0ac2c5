"""The console in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

A reviewer logs in, opens a quarantined model, reads its finding, releases it with a reason and sees
the audit entry; a reader gets no admin buttons; a model whose names hold HTML, JavaScript and rich
markup is shown inert. Screenshots of the main pages go to build/console-screenshots/.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.consolehelp import ESC, IMG, MARKUP, NS, SCRIPT, Site

pytestmark = [pytest.mark.slow, pytest.mark.keras]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console-screenshots"

if not CHROMIUM.exists():
    pytest.skip(
        "/usr/bin/chromium is absent: install Debian's chromium and chromium-driver "
        "(`apt-get install chromium chromium-driver`; .ci/run does it)",
        allow_module_level=True,
    )
from selenium import webdriver  # noqa: E402  (a dev dependency: missing selenium is an error, not a skip)
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="kg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, max(700, min(int(height) + 40, 4000)))
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))


def log_in(driver: WebDriver, site: Site, token: str) -> None:
    d = driver
    d.get(site.url + "/console/")
    assert d.current_url.endswith("/console/login")
    d.find_element(By.ID, "token").send_keys(token)
    click(d, By.ID, "login")
    assert d.current_url.endswith("/console/models"), d.page_source[:1000]
    cookies = d.get_cookies()
    session = [c for c in cookies if c["name"] == "kg_console"]
    assert session and session[0]["httpOnly"] and session[0]["secure"] and session[0]["sameSite"] == "Strict"
    assert d.execute_script("return document.cookie") == ""  # HttpOnly


def click(driver: WebDriver, by: str, value: str) -> None:
    """Click something that loads a new page, and wait until the new page replaced the old one."""
    driver.execute_script("window.kgOldPage = true")  # a new page starts with a new window object
    driver.find_element(by, value).click()
    # Not staleness_of(<html>): Chromium 156 answers that check with "Node with given id does not belong
    # to the document" (a WebDriverException, not a stale-element one) when it races the navigation.
    new_page = "return window.kgOldPage === undefined && document.readyState === 'complete'"
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(new_page)
    )


def body_text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_a_reviewer_releases_a_quarantined_model_and_sees_the_audit_entry(
    browser: WebDriver, site: Site
) -> None:
    d = browser
    d.get(site.url + "/console/login")
    shot(d, "01-login")
    log_in(d, site, site.admin)
    shot(d, "02-models")
    click(d, By.ID, "nav-quarantine")
    assert "review:1" in body_text(d)
    shot(d, "03-quarantine")
    click(d, By.LINK_TEXT, "review:1")
    findings = d.find_element(By.ID, "findings").text
    assert "KG101" in findings and "critical" in findings and "Lambda" in findings
    assert "Lambda" in d.find_element(By.ID, "layers").text
    shot(d, "04-quarantined-model")
    reason = "reviewed: the lambda only doubles its input (ticket SEC-42)"
    d.find_element(By.ID, "release-reason").send_keys(reason)
    click(d, By.ID, "release")
    assert "Released" in d.find_element(By.ID, "notice").text
    assert d.find_element(By.ID, "status").text == "admitted"
    assert d.find_elements(By.ID, "release-form") == []
    click(d, By.ID, "nav-audit")
    rows = d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    released = [r.text for r in rows if " release " in f" {r.text} " and f"{NS}/review:1" in r.text]
    assert released and reason in released[0], [r.text for r in rows[:5]]
    assert d.find_element(By.ID, "chain").text.startswith("Chain: intact")
    shot(d, "05-audit")
    for _ in range(3):  # rejects the gateway counts: no key, then a key for a model it does not serve
        httpx.post(f"{site.url}/v1/models/digits:predict", json={"instances": [[0.0] * 8]})
    headers = {"authorization": f"Bearer {site.invoker}"}
    httpx.post(f"{site.url}/v1/models/nope:predict", json={"instances": [[0.0]]}, headers=headers)
    click(d, By.LINK_TEXT, "Gateway figures")
    labels = [e.text for e in d.find_elements(By.CSS_SELECTOR, "svg.chart text.label")]
    values = [e.text for e in d.find_elements(By.CSS_SELECTOR, "svg.chart text.value")]
    assert dict(zip(labels, values, strict=True)).get("unauthenticated") == "3", (labels, values)
    shot(d, "06-figures")
    with site.world.store() as store:
        assert store.show(site.admin, "review", "1", namespace=NS).status == "admitted"


def test_a_reader_sees_no_admin_actions(browser: WebDriver, site: Site) -> None:
    d = browser
    log_in(d, site, site.reader)
    assert d.find_elements(By.ID, "nav-quarantine") == []
    assert d.find_elements(By.ID, "nav-audit") == []
    click(d, By.LINK_TEXT, "digits:1")
    assert d.find_elements(By.CSS_SELECTOR, "form[action*='/console/models/']") == []
    assert d.find_elements(By.TAG_NAME, "textarea") == []
    shot(d, "07-reader-model")
    d.get(site.url + "/console/quarantine")
    assert "for admins" in d.find_element(By.ID, "error").text


def test_hostile_names_from_a_model_file_are_shown_inert(browser: WebDriver, site: Site) -> None:
    d = browser
    log_in(d, site, site.admin)
    d.get(f"{site.url}/console/models/{NS}/hostile/1")
    assert no_alert(d)
    assert d.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
    assert d.execute_script("return document.querySelectorAll('img').length") == 0
    assert d.execute_script("return document.scripts.length") == 0
    layers = d.find_element(By.ID, "layers").text
    assert SCRIPT in layers
    assert IMG + MARKUP + ESC.replace("\x1b", "\\x1b") in layers
    assets = d.find_element(By.ID, "assets").text
    assert IMG + MARKUP + "\\x1b]0;pwned\\x07.txt" in assets
    assert "pwned" not in str(d.title)  # the OSC title sequence did nothing
    shot(d, "08-hostile-model")
    assert no_alert(d)


def test_screenshots_directory_is_ignored_by_git() -> None:
    root = SHOTS.parents[1]
    answer = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "build/console-screenshots/x.png"],
        capture_output=True,
        text=True,
    )
    assert answer.stdout.strip() == "build/console-screenshots/x.png"
