"""RTMP relays: this server as an RTMP *client* of other servers (pull from an origin, push to edges)."""
