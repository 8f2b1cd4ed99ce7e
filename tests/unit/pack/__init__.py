"""Tests of the default policy pack (ringfence.pack) and ``ringfence init``."""
