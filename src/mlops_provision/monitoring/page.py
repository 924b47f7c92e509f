"""Where the monitoring page is and how to log in, as the site's inventory says (Ansible's
resolution of role mlops' and role prometheus' variables on the first monitoring server)."""

from __future__ import annotations

from typing import Any

from mlops_provision.monitoring.energy import Prometheus


class PageUnknown(Exception):
    """The site names no monitoring server or no password for its page."""


def page_settings(inventory: Any) -> dict[str, Any]:
    """The first monitoring server's page URL, user, password and the site CA's path."""
    hosts = inventory.hosts
    if not hosts:
        raise PageUnknown("the inventory has no host")
    first = hosts[0]
    common = inventory.role_vars(first, facts={"fqdn": first}, roles=["mlops"])
    servers = list(common.get("monitoring_server_hosts") or [])
    if not servers:
        raise PageUnknown("the inventory names no monitoring server (group monitoring)")
    server = servers[0]
    values = inventory.role_vars(server, facts={"fqdn": server}, roles=["mlops", "prometheus"])
    if not values.get("prometheus_web_password"):
        where = ("" if server in inventory.groups.get("monitoring", []) else
                 f"; {server} is the monitoring server `up` picks because group monitoring is empty: "
                 "put it in group monitoring, where group_vars/monitoring apply")
        raise PageUnknown(f"prometheus_web_password is not set for {server}: the page's password, "
                          f"in the site's vault{where}")
    return {"server": server, "url": str(values["monitoring_page_url"]),
            "username": str(values["prometheus_web_username"]),
            "password": str(values["prometheus_web_password"]),
            "cafile": str(values["mlflow_ca_certificate_path"])}


def prometheus_for(inventory: Any) -> Prometheus:
    """A client of the site's Prometheus API through the monitoring page (TLS against the site
    CA, basic auth)."""
    s = page_settings(inventory)
    return Prometheus(s["url"].rstrip("/"), username=s["username"], password=s["password"],
                      cafile=s["cafile"])
