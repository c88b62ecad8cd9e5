"""Entropy coders for integer levels, each with its stream framing: ANS with the message's
own model (``ans``), run-length Elias-gamma (``rleg``), and context-adaptive range coding
tensor by tensor (``ctx``)."""
