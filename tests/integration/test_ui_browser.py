"""The studio and the portal in a real headless Chromium, on the real pieces (MiniLM, Chroma, SmolLM2).

The pages are served as `twinchat serve` serves them: mounted in the API's FastAPI app, by uvicorn. Selenium
drives Debian's chromium through its chromedriver (`apt-get install chromium chromium-driver`); nothing is
downloaded, by Selenium or by the page: every request the page makes is checked to stay on loopback.

Screenshots of every step go to $TWINCHAT_TEST_ARTIFACTS/ui (default: test-artifacts/ui, git-ignored). With
TWINCHAT_UPDATE_SCREENSHOTS=1 the README's two screenshots in docs/screenshots/ are replaced by this run's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio.utils import get_upload_folder

from tests.integration.conftest import HISTORY, ROOT, served
from twinchat.services import TwinService
from ui.downloads import export_name

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("TWINCHAT_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "ui"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Read at import: tests/conftest.py clears TWINCHAT_* variables for each test.
UPDATE_README = os.environ.get("TWINCHAT_UPDATE_SCREENSHOTS", "") not in ("", "0")
WIDTH, HEIGHT = 1366, 900
LLM_WAIT_S = 240  # the first answer loads SmolLM2; a laptop CPU takes a few seconds per answer after that

DELIVERY = "Which delivery day suits you best?"
PAYMENT = "How do you prefer to pay?"
ANSWERS = {  # the panel's earlier survey answers: what the structured answers stand on
    "C-100": ("Saturday", "Card", "I live in Paris, in a flat near the Gare du Nord"),
    "C-200": ("Saturday", "Card", "I live in Manchester with my family"),
    "C-300": ("Weekday", "PayPal", "I live in Leeds near the park"),
}
QUESTIONS = [
    {"id": "delivery", "text": DELIVERY, "options": ["Weekday", "Saturday", "Sunday"]},
    {"id": "payment", "text": PAYMENT, "options": ["Card", "PayPal", "Cash on delivery"]},
]


def history() -> list[dict[str, Any]]:
    rows = list(HISTORY)
    for twin_id, (day, pay, home) in ANSWERS.items():
        rows.append({"customer_id": twin_id, "text": home, "source": "crm", "timestamp": "2010-11-02"})
        for qid, question, answer in (("delivery", DELIVERY, day), ("payment", PAYMENT, pay)):
            rows.append(
                {
                    "customer_id": twin_id,
                    "text": f"Q: {question} A: {answer}",
                    "source": "survey",
                    "question_id": qid,
                    "question": question,
                    "answer": answer,
                    "timestamp": "2010-12-01",
                }
            )
    return rows


@pytest.fixture
def site(real_service: TwinService, tmp_path: Path) -> Iterator[tuple[str, TwinService]]:
    """The API with the studio and the portal, on a free port, in a thread of this process."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in history()))
    real_service.ingest_files([path], panel="pilot", progress=False)
    with served(real_service, ui=True) as url:
        yield url, real_service


class Page:
    """A headless Chromium on one page, with the few gestures the tests need."""

    def __init__(self, url: str, downloads: Path, shots: Path) -> None:
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look anything up
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={WIDTH},{HEIGHT}",  # a laptop screen
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ):
            options.add_argument(flag)
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
        )
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        self.downloads, self.shots = downloads, shots
        self.requested: list[str] = []
        self.driver.get(url)
        self.find("button")

    def find(self, css: str, *, timeout: float = 30) -> Any:
        from selenium.webdriver.common.by import By

        return self.until(lambda: self.driver.find_element(By.CSS_SELECTOR, css), timeout=timeout)

    def text(self, css: str) -> str:
        return self.find(css).text

    def type(self, elem_id: str, text: str) -> None:
        box = self.find(f"#{elem_id} input, #{elem_id} textarea")
        box.clear()
        box.send_keys(text)

    def click(self, css: str) -> None:
        from selenium.common.exceptions import ElementClickInterceptedException

        def clicked() -> bool:
            try:
                self.find(css).click()
                return True
            except ElementClickInterceptedException:  # Gradio's status overlay, for a moment
                return False

        self.until(clicked)

    def tab(self, name: str) -> None:
        from selenium.webdriver.common.by import By

        xpath = f"//button[@role='tab' and normalize-space()='{name}']"
        self.until(lambda: self.driver.find_element(By.XPATH, xpath)).click()

    def toasts(self) -> list[str]:
        from selenium.webdriver.common.by import By

        return [t.text for t in self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")]

    def until(self, condition: Callable[[], Any], *, timeout: float = 30) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(
            self.driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        ).until(lambda _: condition())

    def download(self, css: str, suffix: str) -> Path:
        self.click(css)
        return self.until(lambda: next(iter(self.downloads.glob(f"*{suffix}")), None), timeout=30)

    def dismiss_toasts(self) -> None:
        for close in self.driver.find_elements("css selector", "[data-testid='toast-close']"):
            close.click()
        self.until(lambda: not self.toasts())

    def screenshot(self, name: str, *, whole: bool = False) -> Path:
        """The window, or with ``whole`` the page from its top (up to 1,500 px: the README's pictures)."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        if whole:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(WIDTH, min(height + 150, 1500))
            self.driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.5)  # let the tables lay out again
        self.driver.save_screenshot(str(path))
        if whole:
            self.driver.set_window_size(WIDTH, HEIGHT)
        return path

    def offsite_requests(self) -> list[str]:
        """Every URL the page asked for that is not on loopback (its own data: and blob: URLs are local)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])
        local = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:")
        return [u for u in self.requested if not u.startswith(local)]

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Page]]:
    pages: list[Page] = []
    shots = ARTIFACTS / request.node.name

    def open_page(url: str) -> Page:
        downloads = tmp_path / "downloads"
        downloads.mkdir(exist_ok=True)
        pages.append(Page(url, downloads, shots))
        return pages[-1]

    yield open_page
    for page in pages:
        try:
            page.screenshot("last")  # where the test ended, passed or not
        finally:
            page.close()


def keep_for_readme(shot: Path, name: str) -> None:
    if UPDATE_README:
        from PIL import Image

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # 256 colours keep text sharp at a third of the size: the repository carries these files.
        Image.open(shot).convert("RGB").quantize(256).save(SCREENSHOTS / name, optimize=True)


def sign_in(page: Page, prefix: str, key: str) -> None:
    page.type(f"{prefix}-key", key)
    page.click(f"#{prefix}-sign-in")
    page.until(lambda: "Signed in" in page.text(f"#{prefix}-welcome"))


def test_studio_chat_shows_the_evidence_beside_the_answer(site, browser) -> None:
    url, service = site
    _, key = service.create_key("researcher", label="browser test")
    page = browser(f"{url}/studio/")
    assert "Simulated." in page.text(".simulated-banner")
    sign_in(page, "studio", key)
    page.type("studio-query", "support issue")  # words of its profile: only C-100 raised one
    page.click("#studio-search")
    page.until(lambda: "C-100" in page.text("#studio-twins") and "C-200" not in page.text("#studio-twins"))
    page.until(lambda: "Twin C-100" in page.text("#studio-card"))
    page.screenshot("1-profile")

    page.tab("Chat")
    page.type("studio-message", "Have you ever bought cake stands?")
    page.click("#studio-send")
    page.until(lambda: "simulated ·" in page.text("#studio-chat"), timeout=LLM_WAIT_S)
    evidence = page.text("#studio-evidence")
    assert "cake stand" in evidence and "purchase" in evidence
    shot = page.screenshot("2-chat-with-evidence", whole=True)
    keep_for_readme(shot, "studio.png")
    assert [e.action for e in service.audit(twin_id="C-100")][-1] == "chat"
    assert page.offsite_requests() == []


def test_a_panel_survey_with_its_charts_and_csv(site, browser, tmp_path: Path) -> None:
    url, service = site
    _, key = service.create_key("researcher")
    service.set_consent("C-300", "research", False)  # left out, and said so
    questions = tmp_path / "QUESTIONS.json"
    questions.write_text(json.dumps(QUESTIONS))
    page = browser(f"{url}/studio/")
    sign_in(page, "studio", key)
    page.tab("Survey")
    page.find("#survey-upload input[type=file]").send_keys(str(questions))
    page.until(lambda: "How do you prefer to pay?" in page.text("#survey-questions"))
    page.click("#survey-run")
    page.until(lambda: "simulated answers" in page.text("#survey-summary"), timeout=LLM_WAIT_S)
    summary = page.text("#survey-summary")
    assert "4 simulated answers of 2 twins to 2 questions" in summary and "twin C-300" in summary
    charts = ".survey-chart canvas, .survey-chart svg"
    page.until(lambda: len(page.driver.find_elements("css selector", charts)) >= 2)
    assert "Saturday" in page.text("#survey-results")
    shot = page.screenshot("3-survey-charts", whole=True)
    keep_for_readme(shot, "studio-survey.png")
    csv = page.download("#survey-csv a", ".csv").read_text(encoding="utf-8").splitlines()
    assert csv[0] == "twin_id,question_id,answer,distribution,citations,reason,evidence,simulated"
    assert len(csv) == 5 and not any(line.startswith("C-300") for line in csv)
    assert page.offsite_requests() == []


def test_the_portal_correction_shows_in_the_memories_and_the_export_downloads(site, browser) -> None:
    url, service = site
    _, researcher = service.create_key("researcher")
    _, key = service.create_key("customer", twin_id="C-100")
    page = browser(f"{url}/portal/")
    page.type("portal-key", researcher)  # the wrong kind of key is refused with a message
    page.click("#portal-sign-in")
    page.until(lambda: any("research studio at /studio" in t for t in page.toasts()))
    page.dismiss_toasts()
    sign_in(page, "portal", key)
    page.until(lambda: "Twin C-100" in page.text("#portal-card"))

    page.tab("What my twin knows")
    page.until(lambda: "Gare du Nord" in page.text("#portal-memories"))
    page.type("portal-statement", "I moved to Lyon last year, I don't live in Paris anymore")
    page.click("#portal-correct")
    page.until(lambda: "Stored" in page.text("#portal-corrected"), timeout=LLM_WAIT_S)
    page.until(lambda: "superseded" in page.text("#portal-memories"))
    rows = page.text("#portal-memories")
    assert "I moved to Lyon last year" in rows
    shot = page.screenshot("1-correction-in-memories", whole=True)
    keep_for_readme(shot, "portal.png")
    paris = next(m for m in service.memories("C-100") if "Gare du Nord" in m["text"])
    assert paris["valid"] is False and paris["status"]["state"] == "superseded"

    page.tab("Export or erase")
    page.click("#portal-export")
    exported = json.loads(page.download("#portal-download a", ".json").read_text(encoding="utf-8"))
    assert exported["format"] == "twinchat-export/1" and exported["twin"]["twin_id"] == "C-100"
    assert [c["text"] for c in exported["corrections"]] == [
        "I moved to Lyon last year, I don't live in Paris anymore"
    ]
    page.screenshot("2-export")
    actor = f"key:{service.authenticate(key).key_id}"
    assert {e.actor for e in service.audit(twin_id="C-100") if e.action in ("correct", "export")} == {actor}

    page.type("portal-erase-confirm", "C-100")
    page.click("#portal-erase")
    page.until(lambda: "were erased" in page.text("#portal-welcome"))
    page.screenshot("3-erased")
    assert "C-100" not in [t.twin_id for t in service.twins()] and service.authenticate(key) is None
    cache = Path(get_upload_folder())
    assert not list(cache.glob("**/" + export_name("C-100").rsplit("-", 1)[0] + "-*")), (
        "the export outlived erasure"
    )
    assert page.offsite_requests() == []
