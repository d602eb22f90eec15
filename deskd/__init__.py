"""deskd: an event-driven live/paper trading daemon for a systematic FX desk."""

__version__ = "0.1.0"
