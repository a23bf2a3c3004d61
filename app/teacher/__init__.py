"""Teacher extraction: load any Hugging Face causal LM, read or write a CoT, capture its
generation-phase attention layer by layer, and reduce it to the signals of ``app.signals``.

Modules: ``loading`` (from_pretrained, eager attention), ``prompting`` (chat template, problem and
CoT token ranges with char offsets), ``capture`` (streamed per-layer attention reduction),
``run`` (forced / generate modes over a batch of problems, pure of the DB), ``tiny`` (a small
local Qwen2 teacher for tests and offline demos), ``persist`` (the DB shell).
"""
