"""What volimg may delete, and on which evidence: one table, and the checks that apply it.

An unattended tool lives by "I only ever delete my own". Every destructive step asks
this module first, and docs/safety.md shows ``DELETE_RULES`` as its table (a test keeps
the two the same). Pure: no I/O.

The evidence is the provenance stamp (or, for an image a killed run never finished,
the mark Cinder copied onto it from the volume), never a name or a tag alone: a tag
can be set by anyone, and Cinder copies an ancestor image's stamp onto every image
uploaded from a volume made from it (``Stamp.from_properties`` ignores such a stamp).
"""

from __future__ import annotations

from dataclasses import dataclass

from volimg.model import Image
from volimg.provenance import Stamp, unfinished_mark


@dataclass(frozen=True)
class DeleteRule:
    """One row of docs/safety.md."""

    command: str
    deletes: str
    evidence: str
    never: str


DELETE_RULES = (
    DeleteRule(
        command="`upload --keep N` (one volume or a batch)",
        deletes="whole images of the volume beyond the N newest",
        evidence="the image's own stamp says volimg's upload of that very volume made it "
        "(`volimg_stamped_by=upload`, `volimg_source_volume=<volume>`), or it carries "
        "a mark of a volimg upload of that volume that names it (an unfinished upload)",
        never="an adopted image, one the Glance filter stamped, one with an inherited or "
        "no stamp, a protected image, the image this run made or kept",
    ),
    DeleteRule(
        command="`upload --prune`, `replicate --prune`",
        deletes="one store's copy of the image this run uploaded or was given",
        evidence="the store is not one the plan targets, and the image is active and "
        "already in every target store",
        never="the last copy; a target store",
    ),
    DeleteRule(
        command="`audit --fix`",
        deletes="one store's copy of a stamped image",
        evidence="the stamp records prune intent (`volimg_prune=true`), the base image "
        "it names (if any) can be read now, the image is active and already in every expected "
        "store, and the copy is in none of the stores the rules and the recorded intent keep",
        never="the last copy; a store in `volimg_also_stores` or the type's store (recorded "
        "or current); any copy when the base image is gone or cannot be read (`base-gone` "
        "is reported and left alone); anything of an image whose stamp records no prune "
        "intent, or of an unstamped image; a whole image",
    ),
    DeleteRule(
        command="`adopt`, `plan`, `stores`, `audit` without `--fix`, `upload` and "
        "`replicate` without `--keep` or `--prune`",
        deletes="nothing",
        evidence="",
        never="",
    ),
)

TABLE_HEADER = ("command", "deletes", "evidence", "never")


def rules_table() -> str:
    """``DELETE_RULES`` as the Markdown table of docs/safety.md (a test compares them)."""

    def cell(text: str) -> str:
        return (text or "-").replace("|", "\\|")

    lines = [
        "| " + " | ".join(TABLE_HEADER) + " |",
        "| " + " | ".join("---" for _ in TABLE_HEADER) + " |",
    ]
    for rule in DELETE_RULES:
        cells = (rule.command, rule.deletes, rule.evidence, rule.never)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def own_upload_of(image: Image, volume_id: str) -> str | None:
    """Why ``image`` is volimg's own upload of ``volume_id``, or None if it is not.

    The test ``--keep`` applies before it deletes a whole image (it keeps a protected
    image all the same, and says so).
    """
    stamp = Stamp.from_properties(image.id, image.properties)
    if stamp is not None and stamp.is_own_upload:
        if stamp.source_volume == volume_id:
            return f"stamped by volimg's upload of volume {volume_id}"
        return None
    mark = unfinished_mark(image.id, image.name, image.properties)
    if mark is not None and mark.volume_id == volume_id:
        return f"marked by volimg's upload of volume {volume_id} (run {mark.run}), not finished"
    return None


def removable_copies(
    image: Image, *, keep: tuple[str, ...], stamp: Stamp | None, base_readable: bool
) -> tuple[str, ...]:
    """The stores whose copy ``audit --fix`` may remove, once every ``keep`` copy exists.

    ``keep`` is where the rules put the image now (the audit's expected stores); the
    stamp's recorded intent keeps more: its also-stores and the type store it recorded.
    Nothing is removable without prune intent, while a base image the stamp names is
    gone or unreadable (the rules cannot be told then), or while the image is not
    active. The repair copies to the missing ``keep`` stores before it removes anything,
    so "never the last copy" counts those; with nothing kept, nothing is removed.
    """
    if stamp is None or not stamp.prune or not image.is_active:
        return ()
    if stamp.base_image is not None and not base_readable:
        return ()
    kept = set(keep) | set(stamp.also_stores)
    if stamp.type_store:
        kept.add(stamp.type_store)
    extra = tuple(s for s in image.stores if s not in kept)
    if not keep and len(extra) >= len(image.stores):  # never the last copy
        return ()
    return extra
