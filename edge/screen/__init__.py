"""Session screening: the emotion frame-vote rule and the PHQ-8 reading, with abstention.

A screening aid, not a diagnosis. Labels stay emotion names.
"""
from edge.screen.session import screen_session
from edge.screen.vote import MESSAGES, PATTERN_LEVELS, vote_rule

__all__ = ["MESSAGES", "PATTERN_LEVELS", "screen_session", "vote_rule"]
