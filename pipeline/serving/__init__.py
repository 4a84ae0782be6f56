"""Serving: the production model over REST, behind a guard, following its alias."""
