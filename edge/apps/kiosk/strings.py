"""Every word the kiosk shows a visitor, in one catalogue per language (`kiosk.language`).

English is complete; a translation is a copy of STRINGS["en"] with every key translated
(tests/test_apps_kiosk.py checks each language has exactly the English keys, and that no
text anywhere gives an all-clear). `{name}` marks a value filled in when shown. The page
(static/kiosk.js) fills elements marked `data-s="key"` from the `page.*` keys; views.py
builds the result's sentences from the others.

The PHQ-8 items and answers are the standard English wording (Kroenke et al. 2009; the
PHQ-9 without its item on self-harm, free to use); their scoring is edge.rules.phq8.
"""
from __future__ import annotations

from typing import Dict

STRINGS: Dict[str, Dict[str, str]] = {
    "en": {
        # ----- the page's fixed text (static/index.html: data-s) -----
        "page.title": "Mood check",
        "page.loading": "Getting ready\u2026",
        "page.welcome_lead": ("A short check of how you have been feeling: eight questions on this screen while "
                              "the camera and microphone take a few readings. About {minutes} minutes."),
        "page.what_measured": ("What is measured: your answers; the camera reads your facial expressions and the "
                               "microphone how your voice sounds (pitch, loudness, pauses), not your words."),
        "page.nothing_kept": ("Nothing is recorded: no picture or sound is kept. Your answers and the result are "
                              "saved under an anonymous number."),
        "page.media_kept": ("What is kept: this kiosk is set to keep face pictures and sound with the result, "
                            "under an anonymous number, for the clinic."),
        "page.not_diagnosis": "This is a screening aid, not a diagnosis.",
        "page.research_label": ("Help improve this tool (optional): also keep the numbers measured from my face "
                                "and voice (never pictures or sound) with my answers, under the anonymous number, "
                                "to train it."),
        "page.start": "Start",
        "page.start_note": "Tapping Start means you agree to this check. You can stop at any time.",
        "page.not_ready": "Not ready",
        "page.retry": "Trying again in {seconds} s.",
        "page.question_intro": "Over the last 2 weeks, how often have you been bothered by:",
        "page.read_aloud": "Please read the question out loud, then tap your answer.",
        "page.question_of": "Question {n} of {total}",
        "page.back": "Back",
        "page.stop": "Stop",
        "page.sensing_more": "Thank you. A few more seconds, please keep looking at the screen: {prompt}",
        "page.sensing_done": "The readings are done. Please answer the remaining questions.",
        "page.answer_out_loud": "Please answer out loud:",
        "page.seconds_left": "{seconds} s to go",
        "page.face_found": "Face found",
        "page.face_looking": "Looking for your face",
        "page.no_camera": "No camera",
        "page.camera_stopped": "The camera stopped",
        "page.voice": "Voice",
        "page.preview_alt": "your camera picture, mirrored",
        "page.thanks": "Thank you",
        "page.working": "Working out your result\u2026",
        "page.result_title": "Your result",
        "page.no_result": "No result",
        "page.reference": "Reference {id}. This screen clears in {seconds} s.",
        "page.done": "Done",
        "page.connecting": "Connecting\u2026",
        "page.demo_badge": "demo weights, not for screening",
        # ----- the PHQ-8 -----
        "phq8.item1": "Little interest or pleasure in doing things",
        "phq8.item2": "Feeling down, depressed, or hopeless",
        "phq8.item3": "Trouble falling or staying asleep, or sleeping too much",
        "phq8.item4": "Feeling tired or having little energy",
        "phq8.item5": "Poor appetite or overeating",
        "phq8.item6": ("Feeling bad about yourself, or that you are a failure, or have let yourself or your "
                       "family down"),
        "phq8.item7": "Trouble concentrating on things, such as reading the newspaper or watching television",
        "phq8.item8": ("Moving or speaking so slowly that other people could have noticed; or the opposite, being "
                       "so fidgety or restless that you have been moving around a lot more than usual"),
        "phq8.answer0": "Not at all",
        "phq8.answer1": "Several days",
        "phq8.answer2": "More than half the days",
        "phq8.answer3": "Nearly every day",
        # ----- the capture's hints -----
        "hint.no_face": "We cannot see your face: please look at the screen.",
        "hint.several_faces": "Several faces are in view: following the largest (closest) one.",
        "hint.too_dark": "It is too dark to see your face well: please face the light.",
        "hint.no_voice": "We cannot hear you: please read the question out loud, a little closer.",
        "hint.camera_stopped": "The camera stopped: please tell the staff. You can still answer the questions.",
        "hint.microphone_stopped": ("The microphone stopped: please tell the staff. You can still answer the "
                                    "questions."),
        # ----- the result -----
        "result.questionnaire_title": "Your answers (PHQ-8)",
        "result.questionnaire_score": "{score} of 24: {band_text}",
        "result.questionnaire_missing": "No score, because not every question was answered.",
        "result.band.none": "in the range 0 to 4 (minimal)",
        "result.band.mild": "in the range 5 to 9 (mild)",
        "result.band.moderate": "in the range 10 to 14 (moderate)",
        "result.band.moderately severe": "in the range 15 to 19 (moderately severe)",
        "result.band.severe": "in the range 20 to 24 (severe)",
        "result.expression_title": "Facial expressions (supporting sign)",
        "result.expression.No": "mostly relaxed or happy expressions",
        "result.expression.Low": "some sad expressions",
        "result.expression.Mild": "a mix of sad and relaxed expressions",
        "result.expression.High": "mostly sad expressions",
        "result.expression_missing": "No reading, because the camera did not see your face for long enough.",
        "result.estimate_title": "Voice and face estimate (supporting sign)",
        "result.estimate_text": "about {mu} of 24 ({band}), likely between {low} and {high}",
        "result.estimate_missing": "No reading, because there was not enough usable sound and picture.",
        "caveat.provisional": "Based on a short look only: a rough sign.",
        "caveat.demo_weights": "Demonstration model, not for screening: this number means nothing about you.",
        "source.camera_stopped": "No reading, because the camera stopped during the visit.",
        "source.microphone_stopped": "No reading, because the microphone stopped during the visit.",
        "advice.general": ("If you have felt low, or lost interest in things, for two weeks or more, or if this "
                           "goes on, talk to a doctor, a nurse or the pharmacist here."),
        "advice.talk_to_professional": ("Please talk to a doctor or nurse about how you have been feeling; the "
                                        "staff here can help you arrange it."),
        "advice.talk_soon": ("Please talk to a doctor soon, within the next few days, about how you have been "
                             "feeling; the staff here can help you arrange it today."),
        "result.disagree": ("Your readings do not agree with each other, so it is best to talk it through with a "
                            "professional."),
        "result.help_line": "If you are thinking of harming yourself or feel unsafe, call {help_line} now.",
        "result.notice": "Screening aid only, not a diagnosis.",
        "result.research_kept": "Thank you for helping: your answers and measurements were kept for research.",
        # ----- why there is no result -----
        "why.walked_away": "No face was seen for a while, so the visit stopped and gives no result. You are "
                           "welcome to start again.",
        "why.no_answer": "No answer came for a while, so the visit stopped and gives no result. You are welcome "
                         "to start again.",
        "why.stopped": "The visit was stopped before the end, so it gives no result.",
        "why.internal": "Something went wrong on this kiosk, so the visit gives no result. Please tell the staff.",
        "why.interrupted": "The kiosk was stopped during the visit, so it gives no result.",
        "why.camera_stopped": "The camera stopped during the visit, so it gives no result. Please tell the staff.",
        "why.microphone_stopped": ("The microphone stopped during the visit, so it gives no result. Please tell "
                                   "the staff."),
        "why.sources_stopped": ("The camera or microphone stopped during the visit, so it gives no result. "
                                "Please tell the staff."),
        "why.no_signal": "Not enough of your face or voice could be read for a result. You are welcome to try "
                         "again.",
    },
}

# What no visitor may ever read (an all-clear, or the facial-emotion paper's advice message);
# tests/test_apps_kiosk.py checks every catalogue and every result screen against it.
FORBIDDEN = ("don't need to visit a doctor", "do not need to visit a doctor", "stay well", "no need to",
             "nothing to worry", "you are fine", "you're fine", "no depression", "not depressed", "all clear",
             "healthy", "normal")
SAFETY_KEY = "result.help_line"


def catalogue(language: str) -> Dict[str, str]:
    """The strings of `language` (a key of STRINGS; the profile's check keeps it one)."""
    return STRINGS[language]
