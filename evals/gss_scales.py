"""Ordered answer scales of the GSS panel's eligible items, for the correlation of BENCHMARKS.md section 1.

The panel file holds labels only, no codes, so order is written down here: each scale from one end to the
other as the GSS codebook numbers it. A correlation does not depend on which end is first, only on the
order. An item is ordinal when it has three or more labels and all of them belong to one scale; unordered
items (yes/no, mentioned, race, religion...) are left out of the correlation, not forced into an order.
"""

from __future__ import annotations

from collections.abc import Sequence

SCALES: tuple[tuple[str, ...], ...] = (
    ("Too Little", "About Right", "Too Much"),
    ("a Great Deal", "Only some", "Hardly any"),
    ("Strongly Favor", "Favor", "Neither Favor nor Oppose", "Oppose", "Strongly Oppose"),
    ("Strongly Agree", "Agree", "Neither Agree nor Disagree", "Neither", "Disagree", "Strongly Disagree"),
    ("Agree Strongly", "Agree Somewhat", "Disagree Somewhat", "Disagree Strongly"),
    ("Most Important", "2nd Important", "3rd Important", "4th Important", "Least Important"),
    ("Always Wrong", "Almst Always Wrg", "Sometimes Wrong", "Not Wrong at all"),
    (
        "Almost Daily",
        "Sev Times a Week",
        "Sev Times a Mnth",
        "Once a Month",
        "Sev Times a Year",
        "Once a Year",
        "Never",
    ),
    ("Fundamentalist", "Moderate", "Liberal"),
    ("Lt High School", "High School", "Junior College", "Bachelor", "Graduate"),
    ("Far above Average", "above Average", "Average", "Below Average", "Far Below Average"),
    ("Very Happy", "Pretty Happy", "Not Too Happy"),
    ("Intelligent", "2", "3", "4", "5", "6", "Unintelligent"),
    ("Rich", "2", "3", "4", "5", "6", "Poor"),
    ("Hardworking", "2", "3", "4", "5", "6", "Lazy"),
    ("Govt Reduce Diff", "2", "3", "4", "5", "6", "No Govt Action"),
    ("1", "2", "3", "4", "5", "6", "7"),
    ("0", "1", "2", "3", "4", "5", "6"),
    ("1 Lower", "2", "3", "4", "5 Higher"),
    ("Strongly Support Pref", "Support Pref", "Oppose Pref", "Strongly Oppose Pref"),
    ("a Good Idea", "Depends", "a Bad Idea"),
    ("Lower Class", "Working Class", "Middle Class", "Upper Class"),
    ("Too Harsh", "About Right", "Not Harsh Enough"),
    ("Very Likely", "Somewhat Likely", "Not Very Likely"),
    ("Easier", "Stay Same", "more Difficult"),
    ("Better", "Stayed Same", "Worse"),
    ("Hard Work", "both Equally", "Luck or Help"),
    ("Excellent", "Good", "Fair", "Poor"),
    ("Govt Help Blks", "2", "Agree with both", "4", "No Special Treatment"),
    ("Govt Do more", "2", "Agree with both", "4", "Govt Does Too Much"),
    ("Govt Action", "2", "Agree with both", "4", "People Help Selves"),
    ("Govt Should Help", "2", "Agree with both", "4", "People Help Selves"),
    ("Much Better", "Somewhat Better", "About the Same", "Somewhat Worse", "Much Worse"),
    (
        "Increased a Lot",
        "Increased a Little",
        "Remain the Same as it is",
        "Reduced a Little",
        "Reduced a Lot",
    ),
    ("Everyday", "few Times a Week", "Once a Week", "less than Once Wk", "Never"),
    ("1-9", "10-49", "50-99", "100-499", "500-999", "1,000-1,999", "2,000+"),
    ("Same City", "Same St,dif City", "Different State"),
    (
        "Extremely Liberal",
        "Liberal",
        "Slightly Liberal",
        "Moderate",
        "Slghtly Conservative",
        "Conservative",
        "Extrmly Conservative",
    ),
)


def scale_of(options: Sequence[str]) -> dict[str, float] | None:
    """Each option's position on its scale, 0 at one end and 1 at the other; None for unordered items.

    >>> scale_of(["Agree", "Strongly Agree", "Disagree", "Strongly Disagree"])["Agree"]
    0.2
    >>> scale_of(["Yes", "No"]) is None
    True
    """
    if len(options) < 3:
        return None
    wanted = set(options)
    for scale in SCALES:
        if wanted <= set(scale):
            return {label: scale.index(label) / (len(scale) - 1) for label in options}
    return None
