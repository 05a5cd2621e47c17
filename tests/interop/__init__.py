"""Interop tests: callmask against real peers (SIPp as the carrier on both sides, rtpengine,
espeak-ng) on loopback. The SIPp scenarios live in ``scenarios/``; the harness that runs them is
``tests.support.sipp``.
"""
