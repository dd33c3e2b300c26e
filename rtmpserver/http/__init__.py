"""HTTP delivery and monitoring from the same reactor as RTMP (twisted.web resources)."""
