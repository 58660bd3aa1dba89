"""Talking to Inkit: the HTTP client, the sender loop, backoff, the rate limit."""
