import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_home_page_renders_with_the_local_dark_theme_and_no_outside_requests(page):
    page.goto("/")
    assert page.title() == "Welcome · JustTrades"
    assert page.locator("html").get_attribute("data-bs-theme") == "dark"
    # Bootstrap's stylesheet is served locally when the dark theme's body colour is applied.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(33, 37, 41)"
    assert page.evaluate("typeof window.bootstrap") == "object"
    assert page.evaluate("typeof window.htmx") == "object"


def test_the_navigation_collapses_into_a_menu_button_on_a_phone(chromium, live_server):
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 390, "height": 800})
    phone = context.new_page()
    phone.goto("/")
    assert phone.locator(".navbar-toggler").is_visible()
    phone.locator(".navbar-toggler").click()
    phone.locator("#main-nav a", has_text="Log in").wait_for(state="visible")
    context.close()
