"""Intake's pure rules: reading each channel into the canonical report, normalising its text,
refusing what is not taken, matching reports and identifiers, deciding duplicates and cases,
and splitting a report into what travels in the clear and what is sealed.

Functions of their inputs: no transport, no storage, no clock of their own.
"""
