"""Twilio Proxy v1, wire-compatible, mounted under ``/twilio``: the official twilio SDK's
``https://proxy.twilio.com/v1/...`` paths map one to one below ``/twilio/v1/...``
(``client.proxy.base_url = "http://host:port/twilio"``).

This commit brings the wire pieces that do not need the sessions domain: the error
shape and route class, the parameter reader, paging, the resources' JSON and the auth.
"""
