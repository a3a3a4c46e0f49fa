"""leadd: lead orchestration daemon for automotive service businesses."""

__version__ = "0.1.0"
