"""The Label Studio labeling interface for reviewing a problem: spans, answer type, a note.

Control tag names are the contract between pushed predictions, the reviewer's annotation
and the importer: ``span`` (operation / role labels over ``text``), ``answer_type`` (one
choice) and ``note`` (free text).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from app.execution.expression import OP_ARITY

TEXT_NAME = "text"
SPAN_CONTROL = "span"
ANSWER_TYPE_CONTROL = "answer_type"
NOTE_CONTROL = "note"

# Operations a region computes: the executor's whitelisted operations (design §4, C2) …
OPERATION_LABELS: tuple[str, ...] = tuple(op for op in OP_ARITY if op != "EQUATION")
# … and roles a region plays in the problem.
ROLE_LABELS: tuple[str, ...] = ("EQUATION", "CONSTRAINT", "OBJECTIVE", "GIVEN", "CONTEXT")
# A region whose operation is not known yet (attention-derived, before the classifier exists).
UNTYPED_LABEL = "REGION"
SPAN_LABELS: tuple[str, ...] = (*OPERATION_LABELS, *ROLE_LABELS, UNTYPED_LABEL)

ANSWER_TYPES: tuple[str, ...] = (
    "integer",
    "decimal",
    "fraction",
    "expression",
    "radical",
    "interval",
    "tuple",
    "set",
    "text",
)

_OPERATION_COLOR = "#1f77b4"
_ROLE_COLOR = "#2ca02c"
_UNTYPED_COLOR = "#ff7f0e"


def _label_color(label: str) -> str:
    if label in OPERATION_LABELS:
        return _OPERATION_COLOR
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
  <Header value="Mark the text each operation reads; correct the pre-filled regions"/>
  <Labels name="{SPAN_CONTROL}" toName="{TEXT_NAME}" showInline="true">
{labels}
  </Labels>
  <Text name="{TEXT_NAME}" value="${TEXT_NAME}"/>
  <Header value="Answer type"/>
  <Choices name="{ANSWER_TYPE_CONTROL}" toName="{TEXT_NAME}" choice="single" showInline="true">
{choices}
  </Choices>
  <Header value="Note"/>
  <TextArea name="{NOTE_CONTROL}" toName="{TEXT_NAME}" rows="2" maxSubmissions="1" editable="true"/>
</View>
"""
