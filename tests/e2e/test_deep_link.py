"""A deep link opened first on a fresh server goes through app.py's navigation (a bookmarked run page
after a restart must look like the studio, not like a bare script with a menu of file names)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e


def test_first_request_to_a_deep_link_uses_the_studio_navigation(idle_studio, page):
    studio = idle_studio
    studio.wait_for("Training Studio is ready", timeout=120)
    page.goto(f"{studio.url}/compare")
    page.get_by_role("heading", name=re.compile("Compare")).first.wait_for(timeout=60_000)
    menu = page.locator('[data-testid="stSidebarNav"]')
    menu.get_by_role("link", name="Data").wait_for(timeout=30_000)
    links = [text.strip() for text in menu.get_by_role("link").all_inner_texts()]
    assert not any(re.search(r"\bapp\b", text) for text in links), links
    assert page.get_by_text("Page not found").count() == 0
