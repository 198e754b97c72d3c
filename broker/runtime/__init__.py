"""The runtime that wires the packages together: the service, the control socket, the runner
(threads, loop, logging) and process-wide settings made once at start."""
