"""The arbiter benchmark's discrete-event simulation: engine, workloads and trace, clients, world."""
