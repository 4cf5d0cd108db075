"""The outcome rule (edge.rules.outcome) over every combination of its inputs, and the
PHQ-8 questionnaire's scoring (edge.rules.phq8): one table each, checked entry by entry."""
from __future__ import annotations

import itertools

import pytest

from edge.rules.outcome import ADVICE, decide_outcome
from edge.rules.phq8 import PHQ8_CUTOFF, QuestionnaireResult, check_answers

# A questionnaire per band (score -> band), answers that sum to it.
SCORES = {0: "none", 4: "none", 5: "mild", 9: "mild", 10: "moderate", 14: "moderate",
          15: "moderately severe", 19: "moderately severe", 20: "severe", 24: "severe"}


def _answers(score):
    out = [0] * 8
    for i in range(score):
        out[i % 8] += 1
    return out


@pytest.mark.parametrize("score, band", sorted(SCORES.items()))
def test_the_questionnaire_is_scored_and_banded(score, band):
    result = QuestionnaireResult.from_answers(_answers(score))
    assert (result.score, result.band, result.at_or_above_cutoff) == (score, band, score >= PHQ8_CUTOFF)
    assert result.to_dict()["answers"] == _answers(score)


@pytest.mark.parametrize("bad", [[0] * 7, [0] * 9, [0] * 7 + [4], [0] * 7 + [-1], [0] * 7 + [1.0],
                                 [0] * 7 + [True], "00000000", None])
def test_bad_answers_are_refused_in_one_line(bad):
    with pytest.raises(ValueError) as caught:
        check_answers(bad)
    assert "\n" not in str(caught.value)


# The spec, as tables (independent of the implementation's dicts).
CONCERN = {"none": 0, "mild": 1, "moderate": 2, "moderately severe": 3, "severe": 3,
           "No": 0, "Low": 1, "Mild": 2, "High": 3}
ADVICE_BY_CONCERN = {0: "general", 1: "general", 2: "talk_to_professional", 3: "talk_soon"}
QUESTIONNAIRES = [("not asked", None)] + [("not completed", None)] + [(s, s) for s in (0, 7, 12, 17, 22)]
VOTES = [(None, False)] + [(level, p) for level in ("No", "Low", "Mild", "High") for p in (False, True)]
ESTIMATES = [(band, demo, show) for band in (None, "none", "mild", "moderate", "moderately severe", "severe")
             for demo in (False, True) for show in (False, True)]


def _expected(q, vote, estimate):
    """(lead, advice, disagree, shown) by the spec in the rule's docstring."""
    q_label, q_score = q
    level, _ = vote
    band, demo, show = estimate
    counted = []
    if q_score is not None:
        counted.append(CONCERN[SCORES.get(q_score) or QuestionnaireResult.from_answers(_answers(q_score)).band])
    if level is not None:
        counted.append(CONCERN[level])
    if band is not None and not demo:
        counted.append(CONCERN[band])
    disagree = bool(counted) and max(counted) - min(counted) >= 2
    advice = ADVICE_BY_CONCERN[max(counted)] if counted else "general"
    if disagree and advice == "general":
        advice = "talk_to_professional"
    lead = "questionnaire" if q_score is not None else ("sensors" if level is not None or
                                                         (band is not None and not demo) else "none")
    shown = tuple(name for name, on in (("questionnaire", q_label != "not asked"), ("expression", True),
                                        ("estimate", show or not demo)) if on)
    return lead, advice, disagree, shown


def test_every_combination_gives_the_specified_outcome():
    seen_advice, seen_disagree, cases = set(), set(), 0
    for q, vote, estimate in itertools.product(QUESTIONNAIRES, VOTES, ESTIMATES):
        questionnaire = QuestionnaireResult.from_answers(_answers(q[1])) if q[1] is not None else None
        outcome = decide_outcome(questionnaire, vote[0], vote[1], estimate[0], estimate[1], estimate[2],
                                 questionnaire_asked=q[0] != "not asked")
        got = (outcome.lead, outcome.advice, outcome.disagree, outcome.shown)
        assert got == _expected(q, vote, estimate), (q, vote, estimate, got)
        assert outcome.advice in ADVICE
        # Caveats travel with the readings they qualify.
        assert ("provisional" in outcome.signal("expression").caveats) == (vote[0] is not None and vote[1])
        assert ("demo_weights" in outcome.signal("estimate").caveats) == estimate[1]
        assert not (outcome.signal("estimate").counted and estimate[1])  # demo weights never count
        seen_advice.add(outcome.advice)
        seen_disagree.add(outcome.disagree)
        cases += 1
    assert cases == len(QUESTIONNAIRES) * len(VOTES) * len(ESTIMATES) == 1512
    assert seen_advice == set(ADVICE) and seen_disagree == {False, True}


@pytest.mark.parametrize("score, vote, band, demo, expected", [
    # The issue's screen: a "No" vote beside a moderate estimate (real weights): they disagree
    # by 2, and the advice is to talk to a professional, never an all-clear.
    (None, "No", "moderate", False, ("sensors", "talk_to_professional", True)),
    (0, "High", None, False, ("questionnaire", "talk_soon", True)),  # the most cautious reading leads the advice
    (12, "No", None, False, ("questionnaire", "talk_to_professional", True)),
    (3, "Low", "severe", True, ("questionnaire", "general", False)),  # a demo estimate does not count
    (22, None, None, False, ("questionnaire", "talk_soon", False)),
    (None, None, None, False, ("none", "general", False)),
])
def test_rows_named_in_the_issue(score, vote, band, demo, expected):
    questionnaire = None if score is None else QuestionnaireResult.from_answers(_answers(score))
    outcome = decide_outcome(questionnaire, vote, False, band, demo)
    assert (outcome.lead, outcome.advice, outcome.disagree) == expected


def test_unknown_levels_are_refused():
    with pytest.raises(ValueError):
        decide_outcome(None, "Maybe", False, None, False)
    with pytest.raises(ValueError):
        decide_outcome(None, None, False, "low", False)
