"""The dashboard, looked at where people look at it: in a real headless Chromium, served by
the real app, reading a real influxd."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from logpipe.influxd import free_port
from tests.browser import PHONE, chromium, open_page
from tests.conftest import running_api, write_lines


def _day(n: int) -> str:
    """The n-th day of the range the tests show: the last days before yesterday, so the
    default view (the last 30 days) shows them too."""
    return (datetime.now(timezone.utc).date() - timedelta(days=7 - n)).isoformat()


D1, D2, D3, D4, D5 = (_day(n) for n in range(1, 6))
LINES = [
    f"{D1} 10:00:00 cust_1 /a 200 0.100",
    f"{D1} 11:00:00 cust_1 /a 500 0.300",
    f"{D1} 12:00:00 cust_1 /b 200 0.250",
    f"{D3} 09:00:00 cust_1 /a 200 0.050",
    f"{D3} 09:00:01 cust_1 /a 503 1.500",
    f"{D2} 08:00:00 cust_2 /a 200 0.200",
    f"{D2} 08:00:01 cust_2 /a 200 0.210",
    f"{D2} 08:00:02 cust_2 /a 200 0.220",
    f"{D2} 08:00:03 cust_2 /a 404 0.230",
    f"{D4} 08:00:00 cust_2 /a 200 0.400",
]
RANGE = f"from_date={D1}&to_date={D5}"
ADMIN_KEY = "admin-0123456789abcdef"
SCOPED_KEY = "scoped-0123456789abcdef"

CHARTS = ("requests_chart", "uptime_chart", "latency_chart")
DRAWN = """
const canvas = document.getElementById(arguments[0]);
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
return painted;
"""


@pytest.fixture(scope="module")
def browser():
    with chromium() as session:
        yield session


def _table(browser) -> list[list[tuple[str, str]]]:
    """The table's rows as (data-value, text) per cell."""
    return [
        [
            (cell.get_attribute("data-value"), cell.text)
            for cell in row.find_elements(By.XPATH, "*")
        ]
        for row in browser.find_elements(By.CSS_SELECTOR, "#days tbody tr")
    ]


def _expected_row(day: dict) -> list[tuple[str, str]]:
    """How the page shows one day of the API's answer: the exact value, and rounded."""
    ms = [day[f"{name}_latency"] for name in ("average", "median", "p99")]
    return [
        (day["date"], day["date"]),
        (str(day["total_requests"]), f"{day['total_requests']:,}"),
        (str(day["failed_requests"]), f"{day['failed_requests']:,}"),
        (_js_number(day["uptime"]), f"{day['uptime']:.2f}"),
        *[(_js_number(value), f"{value * 1000:,.1f}") for value in ms],
    ]


def _js_number(value: float) -> str:
    """A number as JavaScript writes it into an attribute (100.0 is "100")."""
    return str(int(value)) if value == int(value) else repr(value)


def _status(browser) -> str:
    return browser.find_element(By.ID, "status").text


def _query(browser) -> dict[str, list[str]]:
    return parse_qs(urlsplit(browser.current_url).query)


def test_the_page_shows_what_the_api_answers_in_its_table_and_charts(settings, browser):
    write_lines(settings, LINES)
    with running_api(settings) as client:
        answer = client.get(f"/customers/cust_1/stats?{RANGE}").json()
        open_page(browser, f"{client.base_url}/?customer=cust_1&{RANGE}")

        assert browser.find_element(By.ID, "title").text == "cust_1"
        assert not browser.find_element(By.ID, "key").is_displayed()  # no keys, no key field
        assert [row for row in _table(browser)] == [_expected_row(d) for d in answer["days"]]
        assert _status(browser) == f"5 requests, 2 failed, from {D1} to {D5}"
        for canvas in CHARTS:
            assert browser.execute_script(DRAWN, canvas) > 1000, f"{canvas} is blank"
        # the charts hold the same figures, on one axis of every day in the range
        requests = browser.execute_script(
            "const c = Chart.getChart('requests_chart');"
            "return [c.data.labels, c.data.datasets.map(d => d.data)]"
        )
        assert requests[0] == [D1, D2, D3, D4, D5]
        assert requests[1] == [[2, None, 1, None, None], [1, None, 1, None, None]]
        latency = browser.execute_script(
            "return Chart.getChart('latency_chart').data.datasets.map(d => d.data[2])"
        )
        day3 = answer["days"][1]
        names = ("average", "median", "p99")
        assert latency == pytest.approx([day3[f"{n}_latency"] * 1000 for n in names], abs=5e-4)

        # hovering a day shows its values
        canvas = browser.find_element(By.ID, "requests_chart")
        x = browser.execute_script(
            "const c = Chart.getChart('requests_chart');"
            "return c.scales.x.getPixelForValue(2) - c.width / 2"  # D3
        )
        ActionChains(browser).move_to_element_with_offset(canvas, int(x), 0).perform()
        tooltip = WebDriverWait(browser, 10).until(
            lambda s: s.execute_script(
                "const t = Chart.getChart('requests_chart').tooltip;"
                "return t.opacity > 0 && [t.title, t.body.map(b => b.lines[0])]"
            )
        )
        assert tooltip == [[D3], ["successful: 1", "failed: 1"]]

        # nothing asked of any host but the API, and no error in the console
        origins = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
        )
        assert origins and set(origins) == {str(client.base_url)}
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_customer_list_is_busiest_first_searchable_and_the_url_round_trips(settings, browser):
    write_lines(settings, LINES)
    with running_api(settings) as client:
        open_page(browser, f"{client.base_url}/")
        query = _query(browser)
        assert set(query) == set()  # the defaults are not written into the URL on arrival
        assert browser.find_element(By.ID, "title").text == "All customers"
        links = browser.find_elements(By.CSS_SELECTOR, "#customers a")
        listed = [(a.get_attribute("data-customer"), a.text) for a in links]
        expected = client.get("/customers?days=30").json()["customers"]  # the default range
        expected.sort(key=lambda c: (-c["total_requests"], c["customer_id"]))
        assert [c for c, _ in listed] == [c["customer_id"] for c in expected]

        # choose a range, then a customer: each lands in the URL
        for field, day in (("from_date", D1), ("to_date", D5)):
            browser.execute_script(f"document.getElementById('{field}').value = '{day}'")
        browser.find_element(By.CSS_SELECTOR, "#range button").click()
        WebDriverWait(browser, 10).until(lambda s: f"from_date={D1}" in s.current_url)
        WebDriverWait(browser, 10).until(
            lambda s: s.execute_script("return document.body.dataset.ready === 'true'")
        )
        assert _query(browser) == {"from_date": [D1], "to_date": [D5]}
        whole = client.get(f"/stats?{RANGE}").json()
        assert _table(browser) == [_expected_row(d) for d in whole["days"]]
        listed = [
            (a.get_attribute("data-customer"), a.find_element(By.CLASS_NAME, "total").text)
            for a in browser.find_elements(By.CSS_SELECTOR, "#customers a")
        ]
        assert listed == [("cust_1", "5"), ("cust_2", "5")]  # the range's totals, ties by id

        shared = f"{client.base_url}/?customer=cust_2&{RANGE}"
        open_page(browser, shared)
        rows = _table(browser)
        answer = client.get(f"/customers/cust_2/stats?{RANGE}").json()
        assert rows == [_expected_row(d) for d in answer["days"]]
        assert [row[0][0] for row in rows] == [D2, D4]
        assert _query(browser) == {
            "customer": ["cust_2"], "from_date": [D1], "to_date": [D5]
        }  # fmt: skip
        assert browser.find_element(By.ID, "from_date").get_attribute("value") == D1

        # and back to everyone, the range kept
        browser.find_element(By.ID, "everyone").click()
        WebDriverWait(browser, 10).until(lambda s: "customer" not in _query(s))
        assert _query(browser) == {"from_date": [D1], "to_date": [D5]}


def test_the_customer_list_orders_by_requests_and_filters_by_search(settings, browser):
    yesterday = _day(6)
    counts = {"cust_a": 2, "cust_b": 5, "cust_c": 2, "big_d": 9}
    write_lines(
        settings,
        [
            f"{yesterday} 10:00:{n:02d} {customer} /a 200 0.1"
            for customer, total in counts.items()
            for n in range(total)
        ],
    )
    with running_api(settings) as client:
        open_page(browser, f"{client.base_url}/")
        links = browser.find_elements(By.CSS_SELECTOR, "#customers a")
        assert [a.get_attribute("data-customer") for a in links] == [
            "big_d", "cust_b", "cust_a", "cust_c"
        ]  # fmt: skip
        assert [a.find_element(By.CLASS_NAME, "total").text for a in links] == ["9", "5", "2", "2"]

        search = browser.find_element(By.ID, "search")
        search.send_keys("CUST_")
        shown = [a.get_attribute("data-customer") for a in links if a.is_displayed()]
        assert shown == ["cust_b", "cust_a", "cust_c"]

        # the keyboard alone: from the search field to a customer's view
        search.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        assert focused.get_attribute("data-customer") == "cust_b"
        focused.send_keys(Keys.ENTER)
        WebDriverWait(browser, 10).until(lambda s: "customer=cust_b" in s.current_url)


def test_a_scoped_key_sees_only_its_customer(settings, browser):
    write_lines(settings, LINES)
    keys = f"{ADMIN_KEY}=*,{SCOPED_KEY}=cust_1"
    guarded = settings.model_copy(update={"api_keys": SecretStr(keys)})
    with running_api(guarded) as client:
        base = client.base_url
        open_page(browser, f"{base}/?{RANGE}")
        assert _status(browser) == "This API needs a key: enter one above."
        assert browser.find_element(By.ID, "key").is_displayed()
        assert not browser.find_element(By.ID, "figures").is_displayed()

        browser.find_element(By.ID, "api_key").send_keys(SCOPED_KEY, Keys.ENTER)
        # a key bound to one customer lands on that customer's view
        WebDriverWait(browser, 20).until(lambda s: "customer=cust_1" in s.current_url)
        open_page(browser, browser.current_url)
        answer = client.get(
            f"/customers/cust_1/stats?{RANGE}", headers={"Authorization": f"Bearer {SCOPED_KEY}"}
        ).json()
        assert _table(browser) == [_expected_row(d) for d in answer["days"]]
        listed = browser.find_elements(By.CSS_SELECTOR, "#customers a")
        assert [a.get_attribute("data-customer") for a in listed] == ["cust_1"]

        open_page(browser, f"{base}/?customer=cust_2&{RANGE}")
        assert _status(browser) == "This key may not see cust_2."
        assert not browser.find_element(By.ID, "figures").is_displayed()
        assert _table(browser) == []

        # the key lives in this tab's sessionStorage, and can be forgotten
        assert browser.execute_script("return sessionStorage.getItem('logpipe-api-key')") == (
            SCOPED_KEY
        )
        browser.find_element(By.ID, "forget_key").click()
        WebDriverWait(browser, 10).until(
            lambda s: s.execute_script("return sessionStorage.length === 0")
        )
        open_page(browser, f"{base}/?customer=cust_1&{RANGE}")
        assert _status(browser) == "This API needs a key: enter one above."


def test_no_data_and_unavailable_influxdb_are_said_plainly(settings, browser):
    write_lines(settings, LINES)
    with running_api(settings) as client:
        empty = f"from_date={_day(-20)}&to_date={_day(-10)}"
        open_page(browser, f"{client.base_url}/?customer=cust_1&{empty}")
        assert _status(browser) == f"No requests for cust_1 from {_day(-20)} to {_day(-10)}."
        assert not browser.find_element(By.ID, "figures").is_displayed()
        open_page(browser, f"{client.base_url}/?customer=cust_1&from_date={D5}&to_date={D1}")
        assert _status(browser) == f"Not a valid view: to_date {D1} is before from_date {D5}"

    nowhere = settings.model_copy(
        update={"influx_url": f"http://127.0.0.1:{free_port()}", "query_timeout": 2.0}
    )
    with running_api(nowhere) as client:
        open_page(browser, f"{client.base_url}/?customer=cust_1&{RANGE}")
        assert _status(browser) == "InfluxDB is unavailable; try again shortly."
        assert browser.find_element(By.ID, "list_status").text == (
            "InfluxDB is unavailable; try again shortly."
        )


def test_the_page_fits_a_phone_screen(settings):
    write_lines(settings, LINES)
    with running_api(settings) as client, chromium(PHONE) as phone:
        open_page(phone, f"{client.base_url}/?customer=cust_1&{RANGE}")
        width = phone.execute_script("return window.innerWidth")
        assert width == PHONE[0]
        # nothing wider than the screen: the table scrolls inside its own box
        assert phone.execute_script("return document.documentElement.scrollWidth") <= width
        for canvas in CHARTS:
            assert phone.find_element(By.ID, canvas).size["width"] <= width
            assert phone.execute_script(DRAWN, canvas) > 500, f"{canvas} is blank"
        assert len(_table(phone)) == 2


def test_the_page_and_its_assets_are_served_with_a_same_origin_policy(settings):
    with running_api(settings) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in (
            "assets/dashboard.js",
            "assets/dashboard.css",
            "assets/vendor/chart.umd.min.js",
        ):
            assert asset in page.text
            served = client.get(f"/{asset}")
            assert served.status_code == 200 and len(served.content) > 1000
        assert "/" not in client.get("/openapi.json").json()["paths"]
