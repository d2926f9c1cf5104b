"""pgflow's website-analysis flow: fetch a page, summarise it and rate its sentiment in
parallel, then save the result.

    website ──┬── summary ───┬── save
              └── sentiment ─┘

The handlers are local stand-ins: "fetching" renders a deterministic page from the URL, the
"AI" steps are plain text heuristics and "saving" derives a record id, so the flow runs
anywhere without network access. ``summary`` is ``async`` and ``sentiment`` takes the
StepContext, to show both kinds of handler.

    pgweave worker pgweave_examples.website_analysis:flow --dsn "$DSN"
    pgweave start analyze_website --input '{"url": "https://example.com"}' --wait --dsn "$DSN"
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TypedDict
from urllib.parse import urlparse

from pydantic import BaseModel, HttpUrl

from pgweave.dsl import Flow, StepContext

POSITIVE = {"great", "love", "fast", "reliable", "happy", "excellent", "simple"}
NEGATIVE = {"slow", "broken", "hate", "bug", "bad", "crash"}


class SiteInput(BaseModel):
    """The flow input."""

    url: HttpUrl


class Page(BaseModel):
    """What the website step produces."""

    url: str
    title: str
    content: str


class Sentiment(BaseModel):
    """A sentiment score in [-1, 1] with the words that decided it."""

    score: float
    positive: list[str]
    negative: list[str]


class WebsiteDeps(TypedDict):
    """Input of the summary and sentiment steps."""

    website: Page


class SaveDeps(TypedDict):
    """Input of the save step."""

    summary: str
    sentiment: Sentiment


class Saved(BaseModel):
    """The save step's result (the run's output)."""

    website_id: str
    url: str
    summary: str
    score: float


def fetch_website(site: SiteInput) -> Page:
    """Stand-in for an HTTP fetch: a deterministic page about the URL's host."""
    host = urlparse(str(site.url)).hostname or "unknown"
    content = (
        f"{host} is a great and reliable service. Users love how fast and simple it is. "
        f"Some report a slow dashboard and one bug in exports. "
        f"Overall, {host} makes teams happy."
    )
    return Page(url=str(site.url), title=f"Welcome to {host}", content=content)


async def summarize(deps: WebsiteDeps) -> str:
    """Stand-in for an LLM summary: the first sentence plus the length of the page."""
    await asyncio.sleep(0)  # an async handler runs on the worker's event loop
    page = deps["website"]
    first = re.split(r"(?<=[.!?])\s", page.content, maxsplit=1)[0]
    return f"{page.title}: {first} ({len(page.content.split())} words)"


def analyze_sentiment(deps: WebsiteDeps, ctx: StepContext) -> Sentiment:
    """Stand-in for a sentiment model: positive minus negative words, normalised."""
    words = re.findall(r"[a-z]+", deps["website"].content.lower())
    positive = sorted({w for w in words if w in POSITIVE})
    negative = sorted({w for w in words if w in NEGATIVE})
    total = len(positive) + len(negative)
    score = round((len(positive) - len(negative)) / total, 3) if total else 0.0
    assert ctx.flow_input["url"], "the context carries the run's input"
    return Sentiment(score=score, positive=positive, negative=negative)


def save_to_db(deps: SaveDeps, ctx: StepContext) -> Saved:
    """Stand-in for an INSERT: a stable record id derived from the URL."""
    url = str(ctx.flow_input["url"])
    return Saved(
        website_id=str(uuid.uuid5(uuid.NAMESPACE_URL, url)),
        url=url,
        summary=deps["summary"],
        score=deps["sentiment"].score,
    )


flow = (
    Flow[SiteInput]("analyze_website", max_attempts=3, base_delay=1, timeout=10)
    .step("website", fetch_website)
    .step("summary", summarize, depends_on=["website"])
    .step("sentiment", analyze_sentiment, depends_on=["website"], max_attempts=5)
    .step("save", save_to_db, depends_on=["summary", "sentiment"])
)
