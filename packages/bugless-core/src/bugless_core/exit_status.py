"""The exit status every ``serve`` process ends with when its stop cut work short.

One constant for both tiers (the gRPC services' :class:`GrpcServiceRunner`
and the web's uvicorn server), so a supervisor reads one meaning from one
number whichever process it ran.
"""

from __future__ import annotations

#: The exit status of a service whose second SIGTERM/SIGINT cut calls or
#: requests still running (0 if none ran). Neither Kubernetes nor systemd nor
#: ``docker stop`` sends a second SIGTERM (theirs is SIGTERM, then SIGKILL
#: after the grace period), so it comes from an operator who chose to cut
#: people's work short; a non-zero status keeps that visible where the exit
#: is recorded (the container's last state, ``systemctl status``) rather than
#: passing for a clean stop. Work cut at a drain's own bounds
#: (``--grace-seconds``, ``--drain-transfer-seconds``) is the configured
#: policy and exits 0.
EXIT_CUT_AT_SIGNAL = 1

__all__ = ["EXIT_CUT_AT_SIGNAL"]
