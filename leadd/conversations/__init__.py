"""Conversation services: what a customer's message does, the chat page, booking, the staff
inbox and its sign-in. One use case per function, each taking the `Runtime` (leadd/runtime.py).
Moving, pausing and resuming a lead and queueing a staff SMS are the ops store's and use cases'
(leadd/store/ops.py, leadd/operations/): one definition of each."""
