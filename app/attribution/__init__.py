"""Error attribution (design §6): why the pipeline got a problem wrong, one category per problem.

Pure core: :mod:`.program_view` (payloads → comparable programs), :mod:`.align` (step assignment,
region tolerance), :mod:`.rules` (the ordered hierarchy, :func:`.rules.attribute`). DB shell:
:mod:`.store` (``attribute_problems``), report queries :mod:`.report`, commands :mod:`.cli`.
Nothing is imported here, so the command line can load :mod:`.cli` without scipy.
"""
