"""emogrid: declarative fine-tuning studies for emotion classification."""

__version__ = "0.1.0"
