"""Conversation services: what a customer's message does, the chat page, booking, the staff
inbox and its actions. One use case per function, each taking `Deps` (deps.py)."""
