"""airlock: sign ahead with an HSM, queue durably, broadcast the moment a link returns."""

__version__ = "0.1.0"
