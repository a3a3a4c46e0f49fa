"""Intake (services): Shopmonkey order events become leads, and leads are enriched.

- `events`: decoding, validation and ordering of order events (pure)
- `ingest`: storing one event (create the lead with its touch points, or apply an update)
- `receive`: an order by webhook or poll: demo filter, ingestion, containment of bad orders
- `enrichment` with `coerce` (the pure boundary) and `demo` (demo_mode's filter)

Every function takes the `Runtime` (leadd.runtime), never the daemon.
"""

from leadd.intake.receive import receive_polled, receive_webhook

__all__ = ["receive_polled", "receive_webhook"]
