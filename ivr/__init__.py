"""ivr: a SIP feature server for business telephony."""

__version__ = "0.1.0"
