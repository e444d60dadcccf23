"""Hearth's workers on a Ray cluster: a second way to host the same worker runtime.

Optional (``pip install hearth[cluster]``, ``make setup-cluster``): nothing outside this package
imports Ray, and this package is imported only when a cluster is asked for (``hearth run
--cluster``, ``hearth cluster ...``, the window's cluster setting).

Modules: ``placement`` (which node gets a job; pure), ``pipe`` (the queue pair that stands in for
a worker's pipe inside an actor), ``staging`` (outputs made on a node, written on the user's
machine), ``actors`` (the per-node arbiter agent and the per-kind worker actors), ``supervisor``
(``ClusterSupervisor`` and ``RayTransport``), ``control`` (``hearth cluster start|join|status|stop``).
"""
