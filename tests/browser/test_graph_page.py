"""The graph page: served pages and data (fast), then the drawing in a real headless Chromium:
layout by layer and position, edge widths, hover cards, the pruning slider, pinning, and
click-through to the feature page."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from graph_store import GraphStore
from synthetic_store import serving


@pytest.fixture(scope="module")
def base(graph_store: GraphStore):
    with serving(graph_store.path) as url:
        yield url


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_graph_list_page_and_data(base: str, graph_store: GraphStore) -> None:
    status, _, body = _get(f"{base}graphs")
    assert status == 200 and b"graph-test-1" in body and b"def add" in body
    status, _, page = _get(f"{base}graph/graph-test-1")
    assert status == 200 and b"/static/graph.js" in page and b'id="prune"' in page
    assert b"featurelens intervene graph-test-1" in page  # no model loaded: the CLI is named instead
    status, ctype, raw = _get(f"{base}graph/graph-test-1/data.json")
    assert status == 200 and ctype == "application/json"
    data = json.loads(raw)
    assert data["intervene"] is None and data["n_layers"] == 2
    features = [n for n in data["nodes"] if n["kind"] == "feature"]
    assert {n["id"] for n in features} == {f["node_id"] for f in graph_store.feature_nodes}
    first = next(n for n in features if n["id"] == graph_store.feature_nodes[0]["node_id"])
    assert first["href"] == f"/feature/tiny-set/{first['feature']}" and first["examples"]
    assert first["label"].startswith("label <b>0</b>")
    status, _, script = _get(f"{base}static/graph.js")
    assert status == 200 and b"innerHTML" not in script  # store text is only ever textContent
    assert _get(f"{base}graph/nope")[0] == 404
    status, _, feature_page = _get(f"{base}{first['href'].lstrip('/')}")
    layer1 = next(f for f in graph_store.feature_nodes if f["layer"] == 1)
    _, _, other = _get(f"{base}feature/tiny-set/{layer1['feature']}")
    assert status == 200 and b"layer 0 transcoder, feature " in feature_page
    assert f"layer 1 transcoder, feature {layer1['feature'] - 24}: reads blocks.1.ln2.hook_normalized".encode() in other


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
    reason="chromium and chromium-driver are not installed; run scripts/setup-browser.sh (make test does)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("chromium is not installed; run scripts/setup-browser.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1400,1200", "--force-device-scale-factor=1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-graph')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    browser.set_page_load_timeout(20)
    browser.set_script_timeout(10)
    yield browser
    browser.quit()


def _open(driver, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#graph[data-ready='1']")))


def _centre(driver, node) -> tuple[float, float]:
    return tuple(driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]", node))


def _slide(driver, value: float) -> None:
    driver.execute_script("const s = document.getElementById('prune'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'))", str(value))


@needs_chromium
def test_nodes_are_laid_out_by_layer_and_position(driver, base: str, graph_store: GraphStore) -> None:
    from selenium.webdriver.common.by import By

    _open(driver, f"{base}graph/graph-test-1")
    nodes = {n.get_attribute("data-id"): n for n in driver.find_elements(By.CSS_SELECTOR, "svg .node")}
    tokens = len(json.loads(_get(f"{base}graph/graph-test-1/data.json")[2])["prompt_tokens"])
    assert len([i for i in nodes if i.startswith("E_")]) == tokens
    assert set(graph_store.logit_ids) <= set(nodes)
    y = {i: _centre(driver, n)[1] for i, n in nodes.items()}
    x = {i: _centre(driver, n)[0] for i, n in nodes.items()}
    embed_y = {y[i] for i in nodes if i.startswith("E_")}
    layer0 = [f for f in graph_store.feature_nodes if f["layer"] == 0 and f["node_id"] in nodes]
    layer1 = [f for f in graph_store.feature_nodes if f["layer"] == 1 and f["node_id"] in nodes]
    assert layer0 and layer1
    # rows: embeddings at the bottom, then layer 0, layer 1, logits at the top
    assert len(embed_y) == 1 and all(y[f["node_id"]] < min(embed_y) for f in layer0)
    assert max(y[f["node_id"]] for f in layer1) < min(y[f["node_id"]] for f in layer0)
    assert all(y[i] < min(y[f["node_id"]] for f in layer1) for i in graph_store.logit_ids)
    # columns: the prompt's positions from left to right
    embeds = sorted((int(i.rsplit("_", 1)[1]), x[i]) for i in nodes if i.startswith("E_"))
    assert [p for p, _ in embeds] == list(range(tokens)) and all(a[1] < b[1] for a, b in zip(embeds, embeds[1:]))
    # edges: width grows with |weight|, sign decides the colour class
    edges = driver.find_elements(By.CSS_SELECTOR, "svg .edge")
    assert edges
    widths = sorted((abs(float(e.get_attribute("data-weight"))), float(e.get_attribute("stroke-width"))) for e in edges)
    assert widths[-1][1] > widths[0][1] and all(a[1] <= b[1] + 1e-9 for a, b in zip(widths, widths[1:]))
    assert {("pos" in e.get_attribute("class")) == (float(e.get_attribute("data-weight")) >= 0) for e in edges} == {True}


@needs_chromium
def test_hover_shows_the_label_as_text_and_top_examples(driver, base: str, graph_store: GraphStore) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(driver, f"{base}graph/graph-test-1")
    first = graph_store.feature_nodes[0]["node_id"]
    node = driver.find_element(By.CSS_SELECTOR, f"svg .node[data-id='{first}']")
    ActionChains(driver).move_to_element(node).perform()
    card = driver.find_element(By.ID, "hovercard")
    assert card.is_displayed()
    assert f"label <b>0</b> of {first}" in card.text  # markup from the store stays text
    assert not card.find_elements(By.TAG_NAME, "b")
    lit = card.find_elements(By.CSS_SELECTOR, ".card-example .tok.on")
    assert lit and driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", lit[0]) != \
        "rgba(0, 0, 0, 0)"


@needs_chromium
def test_slider_prunes_and_pins_survive(driver, base: str, graph_store: GraphStore) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open(driver, f"{base}graph/graph-test-1")

    def features() -> set[str]:
        return {n.get_attribute("data-id") for n in driver.find_elements(By.CSS_SELECTOR, "svg .node.feature")}

    # at the graph's own threshold (the page's start): exactly what its pruning kept
    kept_features = {f["node_id"] for f in graph_store.feature_nodes} - {graph_store.pruned_id}
    assert features() == kept_features
    assert not [e for e in driver.find_elements(By.CSS_SELECTOR, "svg .edge")
                if graph_store.pruned_id in (e.get_attribute("data-source"), e.get_attribute("data-target"))]
    _slide(driver, 1.0)
    everything = features()
    assert graph_store.pruned_id in everything and len(everything) == len(graph_store.feature_nodes)
    _slide(driver, 0.05)
    few = features()
    assert 0 < len(few) < len(everything)
    _slide(driver, 1.0)
    hidden_later = graph_store.feature_nodes[-1]["node_id"]  # least influence: first to go
    node = driver.find_element(By.CSS_SELECTOR, f"svg .node[data-id='{hidden_later}']")
    ActionChains(driver).key_down(Keys.SHIFT).click(node).key_up(Keys.SHIFT).perform()
    assert "pinned=" in driver.current_url and hidden_later in driver.find_element(By.ID, "pinned-list").text
    _slide(driver, 0.05)
    assert hidden_later in features()  # pinned nodes are always drawn
    assert "pinned" in driver.find_element(By.CSS_SELECTOR, f"svg .node[data-id='{hidden_later}']").get_attribute("class")
    driver.refresh()
    _open(driver, driver.current_url)
    assert hidden_later in driver.find_element(By.ID, "pinned-list").text


@needs_chromium
def test_click_opens_the_feature_page(driver, base: str, graph_store: GraphStore) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _open(driver, f"{base}graph/graph-test-1")
    first = graph_store.feature_nodes[0]
    driver.find_element(By.CSS_SELECTOR, f"svg .node[data-id='{first['node_id']}']").click()
    WebDriverWait(driver, 10).until(ec.url_contains(f"/feature/tiny-set/{first['feature']}"))
    assert driver.find_element(By.TAG_NAME, "h1").text


@pytest.fixture(scope="module")
def model_base(graph_store: GraphStore, tiny_model_dir: Path):
    from featurelens.browser.server import url_of
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    server = make_steering_server(graph_store.path, "127.0.0.1", 0, model=str(tiny_model_dir), device="cpu")
    start_in_thread(server)
    try:
        yield url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()


@needs_chromium
def test_pinned_nodes_are_ablated_from_the_page(driver, model_base: str, graph_store: GraphStore) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _open(driver, f"{model_base}graph/graph-test-1")
    first = graph_store.feature_nodes[0]["node_id"]
    node = driver.find_element(By.CSS_SELECTOR, f"svg .node[data-id='{first}']")
    ActionChains(driver).key_down(Keys.SHIFT).click(node).key_up(Keys.SHIFT).perform()
    driver.find_element(By.CSS_SELECTOR, "#intervene button").click()
    WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#intervene-result table")))
    result = driver.find_element(By.ID, "intervene-result")
    assert f"{first}=ablate" in result.text
    assert len(result.find_elements(By.CSS_SELECTOR, "tr.target")) == len(graph_store.target_ids)
    assert len(result.find_elements(By.CSS_SELECTOR, "tr.changed")) == 10
