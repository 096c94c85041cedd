"""The jwt-trust operator: Issuer and TrustPolicy reconciliation on top of the offline library.

Only this package imports kopf, aiohttp and prometheus_client. Its layout:

* ``issuers`` and ``policies``: the decisions, as pure functions of the objects read from the API
  (no I/O, no clock, no kopf), unit-tested without a cluster;
* ``api``: the one Kubernetes API client (aiohttp, server-side apply, label-selected list and watch);
* ``informers``: label-selected list+watch caches of the objects the decisions read;
* ``handlers``: the kopf entry point (``kopf run -m jwt_trust.kube.handlers``) that applies the decisions.
"""
