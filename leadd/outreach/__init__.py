"""Outreach services: sending the touch points of a lead's sequence (and staff messages).

    compose.py    the message: templates rendered for the lead, e-mail footer and headers
    gate.py       whether it may go now, decided after every wait (window, cap, lead, opt-out)
    send.py       one claimed touch point: compose, gate, send, record (`Sender`)
    reconcile.py  sends in doubt after a crash or an ambiguous answer: look before resending
    outcomes.py   what becomes of a row that is not sent now (deferred, finished, not ours)

Every service takes the `Runtime` (store, provider clients, clock, instance id), never the
daemon. Decisions about time (due-ness, quiet hours, caps, retries) read the runtime clock.
"""
