"""Entropy coders for integer levels: ANS with the message's own model, and run-length gamma."""
