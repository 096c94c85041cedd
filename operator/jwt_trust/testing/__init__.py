"""Test and demo support: a real, throw-away Kubernetes control plane (see :mod:`jwt_trust.testing.cluster`).

Not part of the offline library; nothing in ``jwt_trust`` outside tests, the demo and the CLI's ``dev``
commands imports it.
"""
