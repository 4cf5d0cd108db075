"""The rules, one home each: pure functions and constants (numpy only, no models, no I/O).

- `edge.rules.phq8`: the PHQ-8 scale, its five bands and the interval a result shows, and the
  PHQ-8 questionnaire's scoring (eight answers 0..3, their sum, its band, the cut-off of 10);
- `edge.rules.outcome`: one visit's outcome from its readings (the questionnaire leads, the most
  cautious reading sets the advice, disagreement said, no all-clear);
- `edge.rules.vote`: the facial-emotion frame-vote rule (first face frames in three parts);
- `edge.rules.flags`: the nightly trend flag rule (beyond the personal baseline, for long enough).

They sit above edge.features and below edge.models: the model wrappers, the session
screening (edge.screen), the engine's results and the applications all read them from here.
"""
