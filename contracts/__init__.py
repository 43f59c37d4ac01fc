"""What crosses a service boundary: events, API models, topic names."""
