"""The dashboard in Debian's chromium (Playwright, /usr/bin/chromium; never `playwright install`)
against the real console (its endpoints, /events fed by the test's NATS streams) on seeded rows:
it loads without a console error and without one request leaving 127.0.0.1, ranks the token's
accounts, draws an account's equity curve and its open position, shows a position opened during
the test (row committed, event published on NATS) within 2 s over SSE without a reload, polls
instead when the console has no NATS, and renders every page (screenshots: into
$AITRADER_SCREENSHOTS_DIR when set — docs/screenshots holds the committed ones — else a
temporary directory). Skipped without chromium, except under CI=true, where that fails."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from playwright.async_api import Browser, Page, Request, Route, async_playwright
from playwright.async_api import Error as PlaywrightError

from aitrader.embedded import free_port
from services.console.config import ConsoleSettings
from services.console.main import create_app, events_hub
from shared.bus import publish_event
from shared.http_server import listening_socket, serving_app
from shared.messages import PositionEvent, PositionState
from shared.settings import Settings
from shared.subjects import Subjects
from tests.console.conftest import Seeded
from tests.console.seed import T0, closed_record, console_token, insert_closed, seed_dashboard
from tests.factories import wait_for

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
IN_CI = os.environ.get("CI") == "true"
pytestmark = pytest.mark.skipif(
    not HAVE_CHROMIUM and not IN_CI,
    reason="no /usr/bin/chromium (apt-get install chromium); CI installs it and fails without it",
)
LIVE_S = 2.0  # a trade appears this soon without a reload
# What Chromium itself logs for a fetch answered 503 (not the page's doing, no way to silence
# it from a script): the one console error a console without NATS may show, for /events.
EVENTS_503 = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"


@dataclass
class Dashboard:
    base: str
    page: Page
    token: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    sse_requests: list[Request] = field(default_factory=list)

    async def open(self, hash_: str) -> None:
        await self.page.goto(f"{self.base}/{hash_}")

    async def login(self) -> None:
        await self.open("#/")
        await self.page.fill("#login input[name=token]", self.token)
        await self.page.click("#login button[type=submit]")

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.shots / f"{name}.png"))


async def _route(board: Dashboard, route: Route, request: Request) -> None:
    url = urlsplit(request.url)
    if url.hostname != "127.0.0.1":
        board.external.append(request.url)
        await route.abort()
        return
    if url.path == "/api/v1/events":
        board.sse_requests.append(request)
    await route.continue_()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("AITRADER_SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """One chromium for the module's tests (a launch is ~1 s here); each test has its own
    context (cookies, storage, routes)."""
    if not HAVE_CHROMIUM:
        pytest.fail(f"CI=true and {CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def board(
    request: pytest.FixtureRequest,
    chromium: Browser,
    console_pool: asyncpg.Pool,
    db_pool: asyncpg.Pool,
    seeded: Seeded,
    settings: Settings,
    shots: Path,
) -> AsyncIterator[Dashboard]:
    """The real console (every endpoint; /events on the test's NATS streams, or without NATS
    for a test that asks for `without_nats`) on seeded data, and a chromium page on it."""
    await insert_closed(db_pool, [closed_record(seeded.a, T0 + timedelta(hours=h)) for h in range(1, 6)])
    await seed_dashboard(db_pool, seeded.a, seeded.b)
    token = await console_token(db_pool, [seeded.a, seeded.b])
    config = ConsoleSettings(**settings.model_dump(), console_events_heartbeat_s=1.0)
    hub = None if "without_nats" in request.fixturenames else events_hub(config)
    sock = listening_socket("127.0.0.1", free_port())
    app = create_app(console_pool, token_cache_s=0, events=hub)
    async with serving_app(app, sock, "console-browser-test", lifespan="on"):
        if hub is not None:
            await wait_for(lambda: _connected(hub), timeout=10, message="the console's NATS subscriptions")
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        context = await chromium.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = await context.new_page()
            board = Dashboard(base, page, token, shots)
            page.on("console", lambda m: board.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: board.errors.append(str(e)))
            await context.route("**/*", lambda route, request: _route(board, route, request))
            yield board
        finally:
            await context.close()
            if hub is not None:
                hub.end_streams()  # or the server's shutdown waits for open streams


@pytest.fixture
def without_nats() -> None:
    """Asked for by a test: its console has no NATS connection (/events answers 503)."""


async def _connected(hub: Any) -> bool:
    return bool(hub.connected)


async def test_the_dashboard_loads_offline_and_ranks_the_tokens_accounts(board: Dashboard) -> None:
    await board.open("#/")
    await board.page.wait_for_selector("#login")
    await board.shot("token")
    await board.login()
    ranks = board.page.locator("tr.account-row")
    await ranks.first.wait_for()
    assert await ranks.evaluate_all("rs => rs.map(r => r.dataset.account)") == ["B", "A"]
    assert "+5.23 %" in await ranks.first.inner_text()
    assert "-6.11 %" in await ranks.last.inner_text()  # A's drawdown (1063 -> 998), drawn as a fall
    assert await board.page.evaluate("sessionStorage.length") == 1 and board.token not in board.page.url
    await board.shot("leaderboard")
    assert board.errors == [] and board.external == []


async def test_an_account_shows_its_equity_curve_and_open_position(board: Dashboard) -> None:
    await board.login()
    await board.page.click("a.account:text-is('A')")
    await board.page.wait_for_selector("svg.equity circle.point")
    assert await board.page.locator("svg.equity circle.point").count() == 12  # hourly points
    assert await board.page.is_visible("text=equity (USDT), step 1h")
    position = board.page.locator("tr.position[data-symbol='BTC-USDT-SWAP']")
    await position.wait_for()
    text = await position.inner_text()
    assert "long" in text
    # its stop-loss rests on the exchange (seeded live algo order: aitrader.stop_loss_resting)
    assert "resting" in text and "not resting" not in text and "plan only" not in text
    await board.shot("account")
    await board.page.set_viewport_size(PHONE)
    await _fits_the_screen(board.page)
    await board.shot("account-phone")
    assert board.errors == [] and board.external == []


PHONE = {"width": 390, "height": 844}


async def _fits_the_screen(page: Page) -> None:
    """No horizontal scrolling of the page itself: every table scrolls inside its own box, and
    that box ends within the screen."""
    width, inner, boxes = await page.evaluate(
        """() => [document.documentElement.scrollWidth, window.innerWidth,
                  [...document.querySelectorAll("table")].map((t) => {
                      const box = t.closest(".scroll");
                      return box ? box.getBoundingClientRect().right : null;
                  })]"""
    )
    assert width <= inner, f"the page scrolls sideways: {width} px wide on a {inner} px screen"
    assert boxes and all(right is not None and right <= inner + 0.5 for right in boxes), boxes


async def _open_eth(db_pool: asyncpg.Pool, js: JetStreamContext, subjects: Subjects, account: UUID) -> None:
    """What the positions service does when a fill opens a position: commit the row, then
    publish the position event."""
    plan = {"stop_loss": "2600", "take_profit": "2300", "version": 1}
    opened = datetime.now(UTC)
    await db_pool.execute(
        """INSERT INTO aitrader.positions_open (account_id, symbol, side, quantity, avg_entry_price,
               opened_at, confidence_weight_sum, confidence_quantity, exit_plan)
           VALUES ($1, 'ETH-USDT-SWAP', 'short', 3, 2500, $2, 60, 3, $3)""",
        account,
        opened,
        plan,
    )
    state = PositionState(
        side="short", quantity=Decimal("3"), avg_entry_price=Decimal("2500"), opened_at=opened, exit_plan=plan
    )
    event = PositionEvent(
        account_id=account,
        mode="simulated",
        kind="opened",
        inst_id="ETH-USDT-SWAP",
        pos_side="net",
        trade_id="t-eth",
        position=state,
        ts_event=opened,
    )
    await publish_event(js, subjects.for_event(event), event)


async def test_a_position_opened_meanwhile_arrives_over_sse_without_a_reload(
    board: Dashboard, db_pool: asyncpg.Pool, seeded: Seeded, js: JetStreamContext, subjects: Subjects
) -> None:
    """The page reads /events with fetch() and the token as a header (never in the URL) and
    refreshes the open positions on the position event NATS carried; it does not poll then."""
    await board.login()
    await board.open("#/account/A/overview")
    await board.page.wait_for_selector("tr.position[data-symbol='BTC-USDT-SWAP']")
    await board.page.wait_for_selector("#live.state-live")
    await board.page.evaluate("window.__sameDocument = true")
    await _open_eth(db_pool, js, subjects, seeded.a)
    row = board.page.locator("tr.position[data-symbol='ETH-USDT-SWAP']")
    await row.wait_for(timeout=LIVE_S * 1000)
    assert "SL 2,600" in await row.inner_text()
    assert await board.page.evaluate("window.__sameDocument === true")  # no reload
    assert await board.page.locator("#live").inner_text() == "live"
    # (the leaderboard the login opened may have started, then stopped, a stream of all accounts)
    assert all(board.token not in r.url for r in board.sse_requests)
    sent = next(r for r in board.sse_requests if r.url.endswith("/api/v1/events?account=A"))
    assert (await sent.all_headers())["authorization"] == f"Bearer {board.token}"
    assert board.errors == [] and board.external == []


async def test_without_nats_the_page_polls_quietly(
    without_nats: None,
    board: Dashboard,
    db_pool: asyncpg.Pool,
    seeded: Seeded,
    js: JetStreamContext,
    subjects: Subjects,
) -> None:
    """/events answers 503 (no NATS): the page polls the REST list instead and says so; the only
    console error is Chromium's own line for the refused /events request."""
    await board.login()
    await board.open("#/account/A/overview")
    await board.page.wait_for_selector("tr.position[data-symbol='BTC-USDT-SWAP']")
    await board.page.wait_for_selector("#live.state-polling")
    await _open_eth(db_pool, js, subjects, seeded.a)
    await board.page.wait_for_selector("tr.position[data-symbol='ETH-USDT-SWAP']", timeout=LIVE_S * 1000)
    assert board.sse_requests  # it tried the stream first
    assert [e for e in board.errors if e != EVENTS_503] == [] and board.external == []


async def test_the_pages_draw_the_real_answers_and_filter_and_expand(board: Dashboard) -> None:
    await board.login()
    await board.open("#/account/A/trades")
    await board.page.locator("tr.trade").first.wait_for()
    assert await board.page.locator("tr.trade").count() == 6
    await board.page.select_option("select[name=exit_reason]", "liquidation")
    await board.page.click("form.filters button[type=submit]")
    await board.page.wait_for_selector("text=no closed trade matches")
    await board.page.select_option("select[name=exit_reason]", "")
    await board.page.click("form.filters button[type=submit]")
    await board.page.locator("tr.trade").first.wait_for()
    await board.shot("trades")
    await board.open("#/account/A/performance")
    await board.page.wait_for_selector(".holdbar .hold.long")
    assert "long 50 %" in await board.page.locator(".holdbar").inner_text()
    assert await board.page.is_visible("text=stop loss resting ratio")
    assert await board.page.locator("td:text-is('85-100')").count() == 1
    assert await board.page.locator("td:text-is('take_profit')").count() == 1
    await board.shot("performance")
    await board.open("#/account/A/calls")
    await board.page.click("details.call summary")
    assert '"BTC-USDT-SWAP"' in await board.page.locator("details.call pre").first.inner_text()
    await board.shot("calls")
    await board.open("#/market/BTC-USDT-SWAP")
    await board.page.wait_for_selector("svg.candles g.candle")
    assert await board.page.locator("svg.candles g.candle").count() == 80
    lines = "svg.candles path.ema20, svg.candles path.ema50, svg.candles path.rsi"
    assert await board.page.locator(lines).count() == 3
    await board.shot("market")
    assert board.errors == [] and board.external == []


async def test_a_request_leaving_127_0_0_1_is_caught_and_the_page_cannot_make_one(board: Dashboard) -> None:
    """The interception the other tests rely on sees a request to another host; and the page's
    content security policy refuses a script's fetch() to one before it is even sent."""
    await board.login()
    await board.page.wait_for_selector("tr.account-row")
    blocked = await board.page.evaluate("fetch('https://cdn.example.com/x.js').then(() => false, () => true)")
    assert blocked and board.external == []
    assert any("Content Security Policy" in e for e in board.errors)
    with pytest.raises(PlaywrightError):
        await board.page.goto("https://cdn.example.com/page")
    assert board.external == ["https://cdn.example.com/page"]


async def test_closed_trades_page_on_with_the_cursor(
    board: Dashboard, db_pool: asyncpg.Pool, seeded: Seeded
) -> None:
    later = T0 + timedelta(days=1)
    await insert_closed(db_pool, [closed_record(seeded.a, later + timedelta(minutes=m)) for m in range(60)])
    await board.login()
    await board.open("#/account/A/trades")
    rows = board.page.locator("tr.trade")
    await rows.first.wait_for()
    assert await rows.count() == 50  # one page
    await board.page.click("button.more")
    # A locator's wait, not wait_for_function: Playwright polls a string predicate with eval(),
    # which the page's CSP (no 'unsafe-eval') refuses, so that wait failed whenever the second
    # page had not arrived by its first (CDP, CSP-exempt) evaluation: about one run in eight.
    await rows.nth(65).wait_for()
    assert await rows.count() == 66
    assert await board.page.locator("button.more").is_hidden()  # the last page
    await board.page.set_viewport_size(PHONE)  # eleven columns: the widest table
    await _fits_the_screen(board.page)
    assert board.errors == [] and board.external == []
