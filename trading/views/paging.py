"""What the list pages share: one page of a long list, and reading the filters of the query string."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.http import HttpRequest

PAGE_SIZE = 50


def paginate(request: HttpRequest, items) -> Page:
    """Return the page of `items` the request asks for (`?page=`), PAGE_SIZE rows long."""
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def int_or_none(value: str | None) -> int | None:
    """Return a query parameter as an int, or None when it is missing or not a number."""
    try:
        return int(value) if value else None
    except ValueError:
        return None


def query_without_page(request: HttpRequest) -> str:
    """Return the query string without `page`, for the links of the pager to keep the filters."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()
