// The dashboard: one page that reads the API it is served by and draws what it answers.
// Its state (customer, from_date, to_date) lives in the URL, so a view can be bookmarked;
// the API key, when the API needs one, lives in sessionStorage (this tab, until closed).
"use strict";

const KEY_ITEM = "logpipe-api-key";
const DEFAULT_DAYS = 30;
const LIST_PAGE = 1000; // the most /customers gives per page
const COLORS = {
  ok: "#2e7d32", failed: "#c62828", uptime: "#1565c0",
  average: "#6a1b9a", median: "#00838f", p99: "#ef6c00",
};

const DAY = /^\d{4}-\d{2}-\d{2}$/;

const $ = (id) => document.getElementById(id);
const charts = [];

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(day, n) {
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime())) return day; // not a real day: the API will say so
  date.setUTCDate(date.getUTCDate() + n);
  return isoDay(date);
}

/** The view the URL asks for; missing dates default to the last DEFAULT_DAYS UTC days. */
function viewFromUrl() {
  const query = new URLSearchParams(location.search);
  const to = query.get("to_date") || isoDay(new Date());
  // a malformed day is passed on as it is: the API's 422 says what is wrong with it
  const from = query.get("from_date") || (DAY.test(to) ? addDays(to, 1 - DEFAULT_DAYS) : to);
  return { customer: query.get("customer") || null, from, to };
}

function urlOf(view) {
  const query = new URLSearchParams();
  if (view.customer) query.set("customer", view.customer);
  query.set("from_date", view.from);
  query.set("to_date", view.to);
  return `?${query}`;
}

/** GET an API path as JSON: {status, body}; status 0 when the API did not answer. */
async function api(path) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    // no-store: a browser cache keyed by URL alone could show one key's answer to another
    response = await fetch(path, { headers, cache: "no-store" });
  } catch (error) {
    return { status: 0, body: null };
  }
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

/** What a failed answer means to the person looking. */
function problem(status, body, view) {
  const who = view.customer || "any customer";
  switch (status) {
    case 0: return "The API does not answer. Is `logpipe serve` running?";
    case 401: askForKey(); return "This API needs a key: enter one above.";
    case 403: return `This key may not see ${view.customer ? who : "all customers together"}.`;
    case 404: return `No requests for ${who} from ${view.from} to ${view.to}.`;
    case 422: return `Not a valid view: ${detail(body)}`;
    case 429: return "Too many requests at once with this key; reload in a moment.";
    case 503: return "InfluxDB is unavailable; try again shortly.";
    default: return `The API answered ${status}: ${detail(body)}`;
  }
}

function detail(body) {
  const text = body && body.detail;
  if (Array.isArray(text)) return text.map((item) => item.msg).join("; ");
  return text || "no detail";
}

function askForKey() {
  $("key").hidden = false;
  $("api_key").focus();
}

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").dataset.kind = kind;
}

// --- the customer list --------------------------------------------------------------

/** Every customer with requests in the view's days, busiest first. */
async function loadCustomers(view) {
  const all = [];
  const days = `from_date=${view.from}&to_date=${view.to}`;
  for (let offset = 0; offset !== null;) {
    const { status, body } = await api(`customers?${days}&limit=${LIST_PAGE}&offset=${offset}`);
    if (status !== 200) return { status, body, customers: all };
    all.push(...body.customers);
    offset = body.next_offset;
  }
  all.sort((a, b) => b.total_requests - a.total_requests || (a.customer_id < b.customer_id ? -1 : 1));
  return { status: 200, customers: all };
}

function showCustomers(customers, view) {
  $("everyone").href = urlOf({ ...view, customer: null });
  if (!view.customer) $("everyone").setAttribute("aria-current", "page");
  const list = $("customers");
  list.replaceChildren();
  for (const { customer_id, total_requests } of customers) {
    const link = document.createElement("a");
    link.href = urlOf({ ...view, customer: customer_id });
    link.dataset.customer = customer_id;
    if (customer_id === view.customer) link.setAttribute("aria-current", "page");
    const name = document.createElement("span");
    name.textContent = customer_id;
    const total = document.createElement("span");
    total.className = "total";
    total.textContent = total_requests.toLocaleString("en-US");
    link.append(name, total);
    const item = document.createElement("li");
    item.append(link);
    list.append(item);
  }
  filterCustomers();
}

function filterCustomers() {
  const wanted = $("search").value.trim().toLowerCase();
  for (const item of $("customers").children) {
    item.hidden = !item.textContent.toLowerCase().includes(wanted);
  }
}

// --- charts and table ------------------------------------------------------------------

function everyDay(from, to) {
  const days = [];
  for (let day = from; day <= to; day = addDays(day, 1)) days.push(day);
  return days;
}

function chart(canvas, type, labels, datasets, yTitle, stacked) {
  return new Chart(canvas, {
    type,
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
      scales: {
        x: { stacked },
        y: { stacked, beginAtZero: type === "bar", title: { display: true, text: yTitle } },
      },
    },
  });
}

function line(label, values, color) {
  return { label, data: values, borderColor: color, backgroundColor: color, pointRadius: 2 };
}

function showCharts(days, view) {
  charts.splice(0).forEach((old) => old.destroy());
  const labels = everyDay(view.from, view.to);
  const byDay = new Map(days.map((day) => [day.date, day]));
  const series = (pick) => labels.map((label) => (byDay.has(label) ? pick(byDay.get(label)) : null));
  const ms = (seconds) => Math.round(seconds * 1e6) / 1e3;
  charts.push(
    chart($("requests_chart"), "bar", labels, [
      { label: "successful", data: series((d) => d.successful_requests), backgroundColor: COLORS.ok },
      { label: "failed", data: series((d) => d.failed_requests), backgroundColor: COLORS.failed },
    ], "requests", true),
    chart($("uptime_chart"), "line", labels, [
      line("uptime %", series((d) => d.uptime), COLORS.uptime),
    ], "uptime %", false),
    chart($("latency_chart"), "line", labels, [
      line("average", series((d) => ms(d.average_latency)), COLORS.average),
      line("median", series((d) => ms(d.median_latency)), COLORS.median),
      line("p99", series((d) => ms(d.p99_latency)), COLORS.p99),
    ], "latency ms", false),
  );
}

/** One row per day with requests: the API's values, rounded for reading; each cell keeps
 * the exact value in data-value. */
function showTable(days) {
  const number = (value, digits) =>
    value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const rows = days.map((day) => {
    const row = document.createElement("tr");
    row.dataset.day = day.date;
    const cells = [
      [day.date, day.date],
      [day.total_requests, number(day.total_requests, 0)],
      [day.failed_requests, number(day.failed_requests, 0)],
      [day.uptime, number(day.uptime, 2)],
      [day.average_latency, number(day.average_latency * 1000, 1)],
      [day.median_latency, number(day.median_latency * 1000, 1)],
      [day.p99_latency, number(day.p99_latency * 1000, 1)],
    ];
    for (const [index, [value, text]] of cells.entries()) {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) cell.scope = "row";
      cell.dataset.value = value;
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  $("days").tBodies[0].replaceChildren(...rows);
}

// --- the page ---------------------------------------------------------------------------

async function showStats(view) {
  const path = view.customer
    ? `customers/${encodeURIComponent(view.customer)}/stats`
    : "stats";
  $("title").textContent = view.customer || "All customers";
  setStatus("Loading…", "loading");
  const { status, body } = await api(`${path}?from_date=${view.from}&to_date=${view.to}`);
  $("figures").hidden = status !== 200;
  if (status !== 200) {
    setStatus(problem(status, body, view), status === 404 ? "empty" : "error");
    return status;
  }
  showCharts(body.days, view);
  showTable(body.days);
  const total = body.days.reduce((sum, day) => sum + day.total_requests, 0);
  const failed = body.days.reduce((sum, day) => sum + day.failed_requests, 0);
  setStatus(
    `${total.toLocaleString("en-US")} requests, ${failed.toLocaleString("en-US")} failed,` +
      ` from ${view.from} to ${view.to}`,
    "ready",
  );
  return status;
}

async function main() {
  const view = viewFromUrl();
  $("from_date").value = view.from;
  $("to_date").value = view.to;
  $("list_days").textContent = "(requests in these days)";
  if (sessionStorage.getItem(KEY_ITEM)) $("key").hidden = false;
  const [listed, shown] = await Promise.all([loadCustomers(view), showStats(view)]);
  if (listed.status === 200) {
    showCustomers(listed.customers, view);
    $("list_status").textContent = listed.customers.length ? "" : "No customers yet.";
    // a key bound to one customer sees only that one: open it instead of the refusal
    if (!view.customer && shown === 403 && listed.customers.length === 1) {
      location.replace(urlOf({ ...view, customer: listed.customers[0].customer_id }));
    }
  } else {
    $("list_status").textContent = problem(listed.status, listed.body, view);
  }
  document.body.dataset.ready = "true"; // for the browser tests and screenshots
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", filterCustomers);
  $("range").addEventListener("submit", (event) => {
    event.preventDefault();
    const view = viewFromUrl();
    location.search = urlOf({ ...view, from: $("from_date").value, to: $("to_date").value });
  });
  $("key").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("api_key").value.trim());
    location.reload();
  });
  $("forget_key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    location.reload();
  });
  main();
});
