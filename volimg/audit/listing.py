"""What ``volimg audit`` is asked, and which images it audits.

``AuditOptions`` is the selection (images, volumes, all projects) and how ``--fix``
runs; its ``command`` is the ``volimg audit --fix`` line that repeats it, which every
interrupted repair prints. ``audited_images`` finds volimg's images server-side: by
the tag (the stamped ones) and by the run's mark (``volimg.provenance.Mark``: the
images a run created and never stamped).

Cost: two filtered, paged listings (the tag, the mark), narrowed as asked.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from volimg.gateway import Gateway
from volimg.model import CloudIdentity, Image
from volimg.provenance import KEY_MARK, KEY_SOURCE_VOLUME, SCHEMA, TAG, unfinished_mark


@dataclass(frozen=True, kw_only=True)
class AuditOptions:
    images: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    all_projects: bool = False
    fix: bool = False
    dry_run: bool = False
    concurrency: int = 4

    def command(self, *, image: str | None = None) -> str:
        """The ``volimg audit --fix`` line that repeats this selection (or one image)."""
        words = ["volimg", "audit", "--fix"]
        if self.all_projects:
            words.append("--all-projects")
        if image is not None:
            return shlex.join([*words, "--image", image])
        for ref in self.images:
            words += ["--image", ref]
        for ref in self.volumes:
            words += ["--volume", ref]
        return shlex.join(words)


def audited_images(gateway: Gateway, options: AuditOptions, identity: CloudIdentity) -> list[Image]:
    """The images to audit: volimg's (by tag and by mark, server-side), narrowed as asked.

    The mark listing finds the images a volimg run created and never stamped; an image
    whose mark does not claim it (uploaded by someone else from a marked volume) is
    dropped by the caller, as is one whose only stamp was inherited.
    """
    owner = None if options.all_projects else identity.project_id
    images: list[Image] = []
    if options.images:
        images = [gateway.find_image(ref) for ref in options.images]
    elif options.volumes:
        marked = gateway.list_images(properties={KEY_MARK: SCHEMA}, owner=owner)
        for ref in options.volumes:
            volume = gateway.find_volume(ref)
            images += gateway.list_images(
                tag=TAG, properties={KEY_SOURCE_VOLUME: volume.id}, owner=owner
            )
            for image in marked:
                mark = unfinished_mark(image.id, image.name, image.properties)
                if mark is not None and mark.volume_id == volume.id:
                    images.append(image)
    else:
        images = gateway.list_images(tag=TAG, owner=owner, all_projects=options.all_projects)
        images += gateway.list_images(
            properties={KEY_MARK: SCHEMA}, owner=owner, all_projects=options.all_projects
        )
    unique = {image.id: image for image in images}
    return list(unique.values())
