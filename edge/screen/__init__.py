"""Session screening: the emotion frame-vote rule and the PHQ-8 reading, with abstention.

The rules themselves live in edge.rules (vote, PHQ-8 scale); this package applies them to
a session. A screening aid, not a diagnosis. Labels stay emotion names.
"""
from edge.screen.session import screen_session

__all__ = ["screen_session"]
