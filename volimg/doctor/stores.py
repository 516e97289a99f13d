"""Where images land, and which Glance knows those stores.

``volume-type-store`` (each volume type's ``image_service:store_id`` names a store this
Glance has, writable), ``base-image-stores`` (the stores of the volumes' base images are
known here, since volimg follows them) and ``image-endpoints`` (which image endpoint of
the catalog sees which stores, and which one can copy everywhere).
"""

from __future__ import annotations

from collections import Counter

from volimg.doctor.facts import (
    _EXAMPLES,
    BASE_STORES,
    ENDPOINTS,
    FAIL,
    MAX_BASE_IMAGES,
    MAX_OTHER_ENDPOINTS,
    OK,
    SKIPPED,
    TYPE_STORE,
    WARN,
    Check,
    DoctorFacts,
    EndpointStores,
    Unread,
    _some,
    _unread,
)
from volimg.model import VolumeTypeInfo, counted

# --- volume types --------------------------------------------------------------------------


def check_volume_type_stores(facts: DoctorFacts) -> list[Check]:
    """Every volume type's ``image_service:store_id`` names a store this Glance has."""
    types = facts.volume_types
    if isinstance(types, Unread):
        return [
            _unread(
                TYPE_STORE,
                "volume types",
                types,
                "openstack volume type list --long (as an admin)",
            )
        ]
    by_name = {t.name: t for t in types}
    checks: list[Check] = []
    for name in facts.wanted_types:
        if name not in by_name:
            checks.append(
                Check(
                    TYPE_STORE,
                    FAIL,
                    name,
                    f"no volume type named {name!r} is visible to you",
                    "openstack volume type list (the name is case-sensitive)",
                )
            )
    chosen = [by_name[n] for n in facts.wanted_types if n in by_name] or (
        [] if facts.wanted_types else list(types)
    )
    if chosen and not any(t.specs_visible for t in chosen):
        checks.append(
            Check(
                TYPE_STORE,
                SKIPPED,
                "volume types",
                f"Cinder shows extra specs such as image_service:store_id to admins only "
                "(policy volume_extension:types_extra_specs:read_sensitive): "
                f"{counted(len(chosen), 'type')} not checked ({_some(t.name for t in chosen)})",
                "run volimg doctor as an admin, or ask one: openstack volume type show TYPE "
                "-c properties",
            )
        )
        return checks
    in_use = Counter(v.volume_type for v in facts.volumes if v.volume_type)
    for vtype in chosen:
        checks.append(_type_store(facts, vtype, in_use.get(vtype.name, 0)))
    return checks


def _type_store(facts: DoctorFacts, vtype: VolumeTypeInfo, volumes: int) -> Check:
    glance = facts.glance
    yours = f" ({counted(volumes, 'volume')} of yours)" if volumes else ""
    store_id = vtype.store
    if store_id is None:
        where = glance.default_store or "Glance's only store"
        return Check(
            TYPE_STORE,
            OK,
            vtype.name,
            f"no image_service:store_id: Cinder's uploads land in {where}{yours}",
        )
    spec = f"image_service:store_id={store_id}"
    set_spec = f"openstack volume type set --property image_service:store_id=STORE {vtype.name}"
    if not glance.multi_store:
        return Check(
            TYPE_STORE,
            WARN,
            vtype.name,
            f"{spec}, but Glance has a single store and ignores the store Cinder names: the "
            f"spec has no effect{yours}",
            f"openstack volume type unset --property image_service:store_id {vtype.name}, "
            "or enable multiple stores",
        )
    store = glance.store(store_id)
    known = ", ".join(s.id for s in glance.stores if not s.read_only)
    if store is None:
        return Check(
            TYPE_STORE,
            FAIL,
            vtype.name,
            f"{spec}, but this Glance has no store {store_id!r} (it has {known}): every "
            f"upload of a volume of this type fails, late, with a generic message{yours}",
            f"{set_spec} (one of {known}), or add {store_id} to glance-api.conf [DEFAULT] "
            "enabled_backends",
        )
    if store.read_only:
        return Check(
            TYPE_STORE,
            FAIL,
            vtype.name,
            f"{spec}, but store {store_id!r} is read-only in Glance (an http store): Glance "
            f"refuses Cinder's upload into it{yours}",
            f"{set_spec} (one of {known})",
        )
    return Check(TYPE_STORE, OK, vtype.name, f"{spec}: a store this Glance has, writable{yours}")


# --- base images and endpoints -------------------------------------------------------------


def check_base_image_stores(facts: DoctorFacts) -> list[Check]:
    """The stores of the base images of the project's volumes are all known here."""
    subject = "base images"
    from_images = [v for v in facts.volumes if v.base_image_id]
    if not facts.glance.multi_store:
        return [
            Check(
                BASE_STORES,
                SKIPPED,
                subject,
                "Glance has a single store: there are no stores to follow",
                "enable multiple stores first (see multi-store)",
            )
        ]
    if not from_images:
        yours = (
            f"none of your {counted(len(facts.volumes), 'volume')} was made from an image"
            if facts.volumes
            else "you have no volumes"
        )
        return [Check(BASE_STORES, OK, subject, f"{yours}: no base image stores to follow")]
    images = facts.base_images
    if isinstance(images, Unread):
        return [_unread(BASE_STORES, subject, images, "openstack image show BASE_IMAGE")]
    wanted = list(dict.fromkeys(v.base_image_id for v in from_images if v.base_image_id))
    examined = wanted[:MAX_BASE_IMAGES]
    found = [images[i] for i in examined if i in images]
    gone = [i for i in examined if i not in images]
    scope = f"{counted(len(from_images), 'volume')} made from {counted(len(wanted), 'image')}" + (
        f" (the first {MAX_BASE_IMAGES} examined)"
        if facts.base_images_unread or len(wanted) > MAX_BASE_IMAGES
        else ""
    )
    gone_note = (
        f"; {counted(len(gone), 'base image')} gone or not visible to you ({_some(gone)}): "
        "their volumes' images stay in the upload store"
        if gone
        else ""
    )
    active = [i for i in found if i.is_active]
    unshown = [i for i in active if not i.stores]
    if active and len(unshown) == len(active):
        return [
            Check(
                BASE_STORES,
                SKIPPED,
                subject,
                f"{scope}: Glance does not show you their stores (the get_image_location "
                f"policy){gone_note}",
                "run volimg doctor as an admin, or as a member of the images' project",
            )
        ]
    unknown: set[str] = set()
    affected: list[str] = []
    for image in active:
        missing = [s for s in image.stores if facts.glance.store(s) is None]
        if missing:
            unknown.update(missing)
            affected.append(f"{image.name or image.id} in {', '.join(missing)}")
    if not unknown:
        stores = sorted({s for i in active for s in i.stores})
        return [
            Check(
                BASE_STORES,
                OK,
                subject,
                f"{scope}: their stores ({', '.join(stores) or 'none'}) are all known to "
                f"this Glance{gone_note}",
            )
        ]
    details = "; ".join(affected[:_EXAMPLES]) + (
        f"; {len(affected) - _EXAMPLES} more" if len(affected) > _EXAMPLES else ""
    )
    knowers = [
        e
        for e in facts.endpoints
        if isinstance(e.stores, tuple) and set(unknown) <= set(e.stores) and not e.current
    ]
    through = (
        f"; {_endpoint_name(knowers[0])} knows them: copies there must go through it"
        if knowers
        else ""
    )
    fix = (
        f"run volimg against {_endpoint_name(knowers[0])}"
        + (f" (--os-region-name {knowers[0].region})" if knowers[0].region else "")
        if knowers
        else f"add {', '.join(sorted(unknown))} to this glance-api's glance-api.conf "
        "[DEFAULT] enabled_backends, or run volimg against an image endpoint that knows them"
    )
    return [
        Check(
            BASE_STORES,
            WARN,
            subject,
            f"{scope}: {details}, unknown to this Glance ({facts.endpoint}): volimg skips "
            "those stores"
            f"{through}{gone_note}",
            fix,
        )
    ]


def _endpoint_name(endpoint: EndpointStores) -> str:
    return f"region {endpoint.region} ({endpoint.url})" if endpoint.region else endpoint.url


def check_image_endpoints(facts: DoctorFacts) -> list[Check]:
    """Which image endpoint of the catalog sees which stores, and which can copy everywhere."""
    endpoints = facts.endpoints
    if not endpoints:
        return [
            Check(
                ENDPOINTS,
                OK,
                facts.endpoint,
                "the catalog lists no other image endpoint: this one serves every copy",
            )
        ]
    seen: set[str] = set()
    for endpoint in endpoints:
        if isinstance(endpoint.stores, tuple):
            seen.update(endpoint.stores)
    complete = [e for e in endpoints if isinstance(e.stores, tuple) and set(e.stores) >= seen]
    checks: list[Check] = []
    for endpoint in sorted(endpoints, key=lambda e: not e.current):
        subject = _endpoint_name(endpoint)
        own = "volimg uses this endpoint; it " if endpoint.current else ""
        if isinstance(endpoint.stores, Unread):
            checks.append(
                _unread(
                    ENDPOINTS,
                    subject,
                    endpoint.stores,
                    f"curl -H 'X-Auth-Token: ...' {endpoint.url.rstrip('/')}/v2/info/stores",
                )
            )
            continue
        if endpoint.stores is None:
            checks.append(
                Check(
                    ENDPOINTS,
                    WARN,
                    subject,
                    f"{own or 'it '}has a single store (GET /v2/info/stores answers 404), so "
                    "it cannot copy between stores",
                    "copy images through an endpoint with multiple stores",
                )
            )
            continue
        if len(endpoints) == 1:
            checks.append(
                Check(
                    ENDPOINTS,
                    OK,
                    subject,
                    f"the only image endpoint in the catalog; it sees "
                    f"{', '.join(endpoint.stores) or 'no store'}",
                )
            )
            continue
        if endpoint in complete:
            checks.append(
                Check(
                    ENDPOINTS,
                    OK,
                    subject,
                    f"{own}sees every store the catalog's image endpoints know "
                    f"({', '.join(sorted(seen))}), so it can copy everywhere",
                )
            )
            continue
        missing = sorted(seen - set(endpoint.stores))
        better = next((e for e in complete if e.current), complete[0] if complete else None)
        via = (
            f"copies to {', '.join(missing)} must go through {_endpoint_name(better)}"
            if better is not None
            else "no endpoint sees every store"
        )
        checks.append(
            Check(
                ENDPOINTS,
                WARN,
                subject,
                f"{own}sees only {', '.join(endpoint.stores) or 'no store'}, so {via}",
                (
                    f"run volimg against {_endpoint_name(better)}"
                    + (f" (--os-region-name {better.region})" if better.region else "")
                    if better is not None
                    else "list every store in one glance-api's enabled_backends"
                ),
            )
        )
    if facts.endpoints_unread:
        checks.append(
            Check(
                ENDPOINTS,
                WARN,
                "image endpoints",
                f"{counted(facts.endpoints_unread, 'more image endpoint')} in the catalog not "
                f"asked (the doctor asks {MAX_OTHER_ENDPOINTS} at most)",
                "openstack endpoint list --service image",
            )
        )
    return checks
