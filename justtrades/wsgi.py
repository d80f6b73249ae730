"""WSGI entry point (gunicorn justtrades.wsgi): alerts take a lean path, all else the full stack."""

import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "justtrades.settings")

django_application = get_wsgi_application()
WEBHOOK_PREFIX = "/webhook/"


class WebhookHandler(WSGIHandler):
    """Django's request handling without middleware, for TradingView's alerts only.

    The webhook uses no session, user, CSRF token, message, time zone or static file, and answers JSON that no
    browser renders; the middleware providing those cost a tenth of every alert's time. The host is still
    checked against ALLOWED_HOSTS, as for every other request.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        """Build the handler chain from the host check and the view alone."""
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        get_response = self._get_response

        def checked_host(request):
            request.get_host()  # DisallowedHost: answered 400 like anywhere else
            return get_response(request)

        self._middleware_chain = convert_exception_to_response(checked_host)


webhook_application = WebhookHandler()


def application(environ, start_response):
    """Send alerts to the lean handler and every other request through the middleware."""
    if environ.get("PATH_INFO", "").startswith(WEBHOOK_PREFIX):
        return webhook_application(environ, start_response)
    return django_application(environ, start_response)
