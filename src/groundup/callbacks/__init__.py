"""Callbacks: small classes that hook into the Learner's events."""
