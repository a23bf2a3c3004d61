"""The Label Studio labeling interface for reviewing a problem: the model's program to correct.

What a reviewer sees, top to bottom (task data fields in brackets):

* a header with the round, the model version and where the pre-fill came from (``$header``);
* why the task was selected and how uncertain the model is, per decision (``$review_info``:
  uncertainties in [0, 1] where 1 = most in need of a human — not a confidence percentage),
  and for MATH a readable rendering of the LaTeX;
* the problem text (``$text``) with regions pre-filled and typed with the step's operation
  (C2), number mentions marked ``OPERAND``, and Label Studio relations ``operand`` from a
  step's region to the mentions it reads (C3); per-region scores are the model's probabilities;
* the program as editable text, one step per line (``48 / 2 = 24``; the last line is the answer);
* the answer type (C6), pre-selected; a free-text note.

Control tag names are the contract between pushed predictions, the reviewer's annotation and the
importer: ``span`` (labels over ``text``), ``program`` (textarea), ``answer_type`` (one choice),
``note`` (textarea) and the ``operand`` relation.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from app.execution.expression import OP_ARITY
from app.inference.proposals import ANSWER_TYPES as MODEL_ANSWER_TYPES

TEXT_NAME = "text"
INFO_NAME = "review_info"
SPAN_CONTROL = "span"
PROGRAM_CONTROL = "program"
ANSWER_TYPE_CONTROL = "answer_type"
NOTE_CONTROL = "note"
OPERAND_RELATION = "operand"

# Operations a region computes: the executor's whitelisted operations (design §4, C2) …
OPERATION_LABELS: tuple[str, ...] = tuple(op for op in OP_ARITY if op != "EQUATION")
# … a number mention a step reads (the target of an ``operand`` relation) …
OPERAND_LABEL = "OPERAND"
# … and roles a region plays in the problem.
ROLE_LABELS: tuple[str, ...] = ("EQUATION", "CONSTRAINT", "OBJECTIVE", "GIVEN", "CONTEXT")
# A region whose operation is not known (context region from C1 or attention).
UNTYPED_LABEL = "REGION"
SPAN_LABELS: tuple[str, ...] = (*OPERATION_LABELS, OPERAND_LABEL, *ROLE_LABELS, UNTYPED_LABEL)

# The model's answer types first (app.inference.proposals), then older choices kept so that
# annotations made with an earlier config stay valid.
ANSWER_TYPES: tuple[str, ...] = (*MODEL_ANSWER_TYPES, *(t for t in ("set",) if t not in MODEL_ANSWER_TYPES))

_OPERATION_COLOR = "#1f77b4"
_OPERAND_COLOR = "#9467bd"
_ROLE_COLOR = "#2ca02c"
_UNTYPED_COLOR = "#ff7f0e"


def _label_color(label: str) -> str:
    if label in OPERATION_LABELS:
        return _OPERATION_COLOR
    if label == OPERAND_LABEL:
        return _OPERAND_COLOR
    if label in ROLE_LABELS:
        return _ROLE_COLOR
    return _UNTYPED_COLOR


def label_config() -> str:
    """The project's label config XML."""
    labels = "\n".join(
        f"    <Label value={quoteattr(label)} background={quoteattr(_label_color(label))}/>" for label in SPAN_LABELS
    )
    choices = "\n".join(f"    <Choice value={quoteattr(choice)}/>" for choice in ANSWER_TYPES)
    return f"""<View>
  <Style>.mycelium-info {{ white-space: pre-wrap; font-family: monospace; font-size: 13px;
    background: #f6f8fa; padding: 8px; border-left: 4px solid #ff7f0e; }}</Style>
  <Header value="$header" size="5"/>
  <View className="mycelium-info">
    <Text name="{INFO_NAME}" value="${INFO_NAME}" selectionEnabled="false"/>
  </View>
  <Header value="Problem: fix the step regions (typed with their operation) and the OPERAND links" size="5"/>
  <Labels name="{SPAN_CONTROL}" toName="{TEXT_NAME}" showInline="true">
{labels}
  </Labels>
  <Text name="{TEXT_NAME}" value="${TEXT_NAME}"/>
  <Relations>
    <Relation value="{OPERAND_RELATION}"/>
  </Relations>
  <Header value="Program: one step per line, e.g. 48 / 2 = 24 (the last line is the answer). It is executed at import." size="5"/>
  <TextArea name="{PROGRAM_CONTROL}" toName="{TEXT_NAME}" rows="6" maxSubmissions="1" editable="true"/>
  <Header value="Answer type" size="5"/>
  <Choices name="{ANSWER_TYPE_CONTROL}" toName="{TEXT_NAME}" choice="single" showInline="true">
{choices}
  </Choices>
  <Header value="Note" size="5"/>
  <TextArea name="{NOTE_CONTROL}" toName="{TEXT_NAME}" rows="2" maxSubmissions="1" editable="true"/>
</View>
"""
