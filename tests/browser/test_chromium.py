"""The browser pages in a real headless Chromium (Debian's chromium + chromium-driver,
installed by scripts/setup-browser.sh), driven by selenium: search, navigation, the
SQL box, hover values, and a screenshot check that examples are really highlighted."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from synthetic_store import explanation_text, filled_store, serving

from featurelens.browser.render_feature import highlight_rgb
from featurelens.export.runner import export

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DID = "smollm2-l6-topk"

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="chromium and chromium-driver are not installed; run scripts/setup-browser.sh (make test does)",
)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return filled_store(tmp_path_factory.mktemp("browser") / "store.duckdb", 24)


@pytest.fixture(scope="module")
def base(filled: Path):
    with serving(filled) as url:
        yield url


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1200,1600", "--force-device-scale-factor=1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=DRIVER)
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(20)
    browser.set_script_timeout(10)
    yield browser
    browser.quit()


def _wait(driver, css: str):
    return WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def _pixel(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB").getpixel((x, y))


def test_search_then_open_a_feature(driver, base: str) -> None:
    driver.get(base)
    box = _wait(driver, "header input[type=search]")
    box.send_keys("numbers")
    box.submit()
    link = _wait(driver, "table.results a")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.results tbody tr")
    assert rows and all("numbers" in r.text for r in rows)
    target = link.get_attribute("href")
    link.click()
    WebDriverWait(driver, 10).until(ec.url_to_be(target))
    feature = int(target.rsplit("/", 1)[1])
    assert explanation_text(feature) in driver.find_element(By.CSS_SELECTOR, "section.explain").text
    assert driver.find_element(By.CSS_SELECTOR, "svg.histogram").is_displayed()


def test_examples_are_highlighted_on_screen(driver, base: str) -> None:
    driver.get(f"{base}feature/{DID}/2")
    _wait(driver, ".examples.top .tok.on")
    section = driver.find_element(By.CSS_SELECTOR, ".examples.top")
    max_activation = float(section.get_attribute("data-scale"))
    shown = driver.find_element(By.XPATH, "//table[@class='stats']//th[.='max activation']/following-sibling::td")
    assert float(shown.text) == pytest.approx(max_activation, rel=1e-2)
    checked = 0
    for token in driver.find_elements(By.CSS_SELECTOR, ".examples.top .tok.on")[:6]:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", token)
        png = driver.get_screenshot_as_png()
        rect = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]", token)
        x, y = int(rect[0] + rect[2] / 2), int(rect[1] + 1)  # top padding: background, no glyph or corner
        value = float(token.get_attribute("data-act"))
        expected = highlight_rgb(value / max_activation)
        got = _pixel(png, x, y)
        assert all(abs(g - e) <= 6 for g, e in zip(got, expected)), (value, got, expected)
        checked += 1
    assert checked >= 3
    plain = driver.find_element(By.CSS_SELECTOR, ".examples.top .tok:not(.on)")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", plain)
    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width]", plain)
    assert _pixel(driver.get_screenshot_as_png(), int(rect[0] + rect[2] / 2), int(rect[1] + 1)) == (255, 255, 255)


def test_hover_shows_the_activation_value(driver, base: str) -> None:
    driver.get(f"{base}feature/{DID}/2")
    token = _wait(driver, ".examples.top .tok.on")
    ActionChains(driver).move_to_element(token).perform()
    hovered = driver.execute_script("return document.querySelector('.tok:hover')")
    assert hovered is not None and hovered.get_attribute("title") == token.get_attribute("title")
    assert float(token.get_attribute("title")) == pytest.approx(float(token.get_attribute("data-act")), rel=1e-3)
    assert driver.execute_script("return getComputedStyle(arguments[0]).cursor", token) == "help"


def test_script_text_in_the_corpus_stays_text(driver, base: str) -> None:
    driver.get(f"{base}feature/{DID}/1")
    _wait(driver, ".examples")
    assert driver.execute_script("return document.querySelectorAll('main script').length") == 0
    assert "<script>alert(1)</script>" in driver.find_element(By.TAG_NAME, "main").text


def test_sql_box_shows_rows_and_one_line_errors(driver, base: str) -> None:
    driver.get(f"{base}sql")
    area = _wait(driver, "form.sql textarea")
    area.send_keys("SELECT feature, density FROM features ORDER BY feature LIMIT 4")
    driver.find_element(By.CSS_SELECTOR, "form.sql button").click()
    _wait(driver, "table.sqlresult")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.sqlresult tbody tr")) == 4
    area = driver.find_element(By.CSS_SELECTOR, "form.sql textarea")
    area.clear()
    area.send_keys("DROP TABLE features")
    driver.find_element(By.CSS_SELECTOR, "form.sql button").click()
    error = _wait(driver, "p.error")
    assert error.text.startswith("SQL error:") and "\n" not in error.text


def test_static_report_opens_from_disk_with_highlighting(driver, filled: Path, tmp_path: Path) -> None:
    export(filled, "html", tmp_path / "site", where="feature < 6")
    driver.get((tmp_path / "site" / "index.html").as_uri())
    _wait(driver, "table.list a").click()
    _wait(driver, "table.list tbody a")
    driver.find_elements(By.CSS_SELECTOR, "table.list tbody a")[2].click()
    token = _wait(driver, ".examples.top .tok.on")
    colour = driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", token)
    assert colour != "rgba(0, 0, 0, 0)" and colour.startswith("rgb(255,")
    assert driver.execute_script("return getComputedStyle(arguments[0]).whiteSpace", token) == "pre"  # css loaded
