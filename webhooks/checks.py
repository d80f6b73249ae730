"""Start-up checks: address settings that cannot be read would make every webhook answer 503."""

from django.core.checks import Error, register

from webhooks.services import allowed_networks, trusted_proxies


@register()
def address_settings_check(app_configs, **kwargs) -> list[Error]:
    """Report WEBHOOK_ALLOWED_IPS or TRUSTED_PROXIES entries that are not addresses or networks."""
    errors = []
    for read, setting, code in (
        (allowed_networks, "WEBHOOK_ALLOWED_IPS", "webhooks.E001"),
        (trusted_proxies, "TRUSTED_PROXIES", "webhooks.E002"),
    ):
        try:
            read()
        except ValueError as error:
            errors.append(Error(str(error), hint=f"Fix {setting} in the environment or .env.", id=code))
    return errors
