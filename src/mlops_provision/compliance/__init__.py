"""Compliance scans: OpenSCAP results read against the platform's documented waivers."""
