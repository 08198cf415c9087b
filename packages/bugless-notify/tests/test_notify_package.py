from __future__ import annotations

import importlib.metadata

from bugless_core.plugins import load_plugins


def test_package_installs_with_its_version() -> None:
    import bugless_notify

    assert bugless_notify.__version__ == importlib.metadata.version("bugless-notify")


def test_plugin_module_loads_through_the_bugless_entry_point() -> None:
    plugins = load_plugins()
    assert "bugless_notify.plugin" in {p.module for p in plugins.loaded}


def test_email_and_webhook_channels_are_registered_by_name() -> None:
    from bugless_notify.mail import EmailChannel
    from bugless_notify.webhook import WebhookChannel

    channels = load_plugins().notification_channels
    assert channels.get("email") is EmailChannel
    assert channels.get("webhook") is WebhookChannel
