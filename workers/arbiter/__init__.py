"""The VRAM arbiter: the one authority over GPU memory for every Hearth process on the machine.

A separate process (``python -m workers.arbiter``, started on demand by the first client) that
never imports torch or Qt. Workers ask it before they allocate (``ArbiterClient.acquire``), it
grants, queues, refuses or revokes leases (``Ledger``), and it sees the device through a
``DeviceView`` (NVML, worker readings, host memory or a simulation).

Modules: ``messages`` (the protocol), ``device``, ``ledger`` (the books, pure logic), ``policy``
(whom to grant, evict, shrink, pause or throttle), ``records`` (the ledger's data), ``server``
(the process), ``client``, ``selfcheck`` (a worker's check of its usage against its leases),
``status`` (``hearth arbiter status``).
"""
