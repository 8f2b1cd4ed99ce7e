"""The policy language: parse → validate (against tool declarations) → compile → evaluate.

Public entry points are re-exported from :mod:`ringfence`; everything here is pure.
"""
