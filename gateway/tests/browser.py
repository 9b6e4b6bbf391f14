"""Drives the dashboard in Debian's headless Chromium: uploads a CSV through the page,
waits for its timeline to reach `registered` and for the notification to appear, checks
the datasets table, and saves a screenshot. Called by tests/browser.rs with:
    python browser.py BASE_URL TOKEN CSV_PATH TABLE SCREENSHOT_PATH RAGGED_CSV_PATH WIDER_CSV_PATH
Exits non-zero (with the reason and the page's state) on any failure."""

import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

base, token, csv_path, table, screenshot, ragged_path, wider_path = sys.argv[1:8]

profile = tempfile.mkdtemp(prefix="weir-chromium-")
options = Options()
options.binary_location = "/usr/bin/chromium"
for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1000",
            "--disable-dev-shm-usage"]:
    options.add_argument(arg)
driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def texts(selector):
    """The texts of the elements matching `selector`, read again when the page
    re-rendered them between finding and reading (live updates)."""
    def read(d):
        try:
            return [e.text for e in d.find_elements(By.CSS_SELECTOR, selector)] or None
        except StaleElementReferenceException:
            return None
    return WebDriverWait(driver, 30).until(read)
try:
    driver.get(f"{base}/#token={token}")
    wait = WebDriverWait(driver, 60, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    driver.find_element(By.ID, "file").send_keys(csv_path)
    driver.find_element(By.ID, "table").send_keys(table)
    driver.find_element(By.ID, "upload-btn").click()

    def status(d):
        return d.find_element(By.ID, "upload-status").text

    try:
        wait.until(lambda d: status(d) in ("registered", "failed", "aborted"))
    finally:
        driver.save_screenshot(screenshot)
    assert status(driver) == "registered", f"upload ended {status(driver)}: {driver.find_element(By.ID, 'failure').text}"
    progress = driver.find_element(By.ID, "progress").get_attribute("value")
    assert progress == "100", f"progress bar at {progress}"
    steps = [li.get_attribute("data-step") for li in driver.find_elements(By.CSS_SELECTOR, "#timeline li[data-step]")]
    assert steps[-3:] == ["combine", "infer", "register"], f"timeline steps {steps}"
    wait.until(lambda d: f"dataset {table} v1 is ready" in d.find_element(By.ID, "notifications").text)
    wait.until(lambda d: table in d.find_element(By.ID, "datasets").text)
    # Search narrows the list; a miss empties it.
    driver.find_element(By.ID, "search").send_keys("no-such-dataset")
    wait.until(lambda d: d.find_element(By.ID, "datasets").text == "")
    driver.find_element(By.ID, "search").clear()
    driver.find_element(By.ID, "search").send_keys(table[:5])
    wait.until(lambda d: table in d.find_element(By.ID, "datasets").text)
    # A ragged CSV without a table name: registered with its bad rows rejected, and the
    # page says so: a warning badge on the dataset, the bad rows under the upload.
    driver.find_element(By.ID, "search").clear()
    driver.find_element(By.ID, "table").clear()
    driver.find_element(By.ID, "file").send_keys(ragged_path)
    driver.find_element(By.ID, "upload-btn").click()
    wait.until(lambda d: "ragged" in d.find_element(By.ID, "timeline-upload").text and status(d) in ("registered", "failed", "aborted"))
    assert status(driver) == "registered", f"ragged upload ended {status(driver)}: {driver.find_element(By.ID, 'failure').text}"
    wait.until(lambda d: d.find_element(By.ID, "quality").is_displayed())
    badge = driver.find_element(By.ID, "quality-badge").text
    assert badge == "2 bad rows", f"quality badge {badge!r}"
    problems = texts("#problems tr")
    assert len(problems) == 2 and problems[0].startswith("3"), f"bad-row table {problems}"
    summary = driver.find_element(By.ID, "quality-summary").text
    assert "rejects.ndjson" in summary and "2 rejected" in summary, f"summary {summary!r}"
    wait.until(lambda d: "2 rejected" in d.find_element(By.ID, "datasets").text)
    # Its versions: click the dataset, then upload a second version with a new column
    # through the form, and see the tree with the schema change.
    def click_ragged(d):
        # The table is re-rendered on every live event: retry a click that lands on a
        # row that was just replaced.
        try:
            rows = [tr for tr in d.find_elements(By.CSS_SELECTOR, "#datasets tr") if tr.text.startswith("ragged")]
            if not rows:
                return False
            rows[0].click()
            return True
        except StaleElementReferenceException:
            return False
    wait.until(click_ragged)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions li")) == 1)
    dataset_id = driver.find_element(By.ID, "detail-name").text.split("(")[1].rstrip(")")
    driver.find_element(By.ID, "dataset").send_keys(dataset_id)
    driver.find_element(By.ID, "file").send_keys(wider_path)
    driver.find_element(By.ID, "upload-btn").click()
    wait.until(lambda d: "wider" in d.find_element(By.ID, "timeline-upload").text and status(d) in ("registered", "failed", "aborted"))
    assert status(driver) == "registered", f"second version ended {status(driver)}: {driver.find_element(By.ID, 'failure').text}"
    wait.until(lambda d: "v2" in d.find_element(By.ID, "datasets").text)
    wait.until(click_ragged)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions li")) == 2)
    versions = texts("#versions li")
    assert "[main]" in versions[1] and "schema: +extra" in versions[1], f"versions {versions}"
    driver.save_screenshot(screenshot)
    print(f"ok: {table} registered; timeline {steps}; ragged: {badge}, {problems}; versions {versions}; screenshot {screenshot}")
except Exception as e:
    print(f"browser test failed: {e!r}\npage text:\n{driver.find_element(By.TAG_NAME, 'body').text}", file=sys.stderr)
    sys.exit(1)
finally:
    driver.quit()
