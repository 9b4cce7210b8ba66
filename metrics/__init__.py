"""vidfix.metrics: temporal drift of any video file or tensor."""

__all__: list[str] = []
