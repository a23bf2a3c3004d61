"""Error attribution (design §6): why the pipeline got a problem wrong, one category per problem.

Pure core: :mod:`.program_view` (payloads → comparable programs), :mod:`.align` (step assignment,
region tolerance), :mod:`.rules` (the ordered hierarchy). DB shell: :mod:`.store`
(``attribute_problems``), report queries :mod:`.report`, commands :mod:`.cli`.
"""

from app.attribution.rules import CATEGORIES, CORRECT, NO_REFERENCE, Outcome, TeacherTrace, Verdict, attribute

__all__ = ["CATEGORIES", "CORRECT", "NO_REFERENCE", "Outcome", "TeacherTrace", "Verdict", "attribute"]
